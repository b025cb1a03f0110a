"""``module:Class`` plug-in envs next to the suite YAML or in the current directory."""

from __future__ import annotations

import operator
import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from mtrl.envs import load_suite
from mtrl.errors import MtrlError
from mtrl.rollout import Rollout

PLUGIN = '''
import os

import gymnasium as gym
import numpy as np


class PluginEnv(gym.Env):
    """Observation: the step count; the action is ignored."""

    def __init__(self, size=3):
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.action_space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
        self.pid = os.getpid()
        self.source = __file__
        self.t = 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return np.zeros(self.observation_space.shape, np.float32), {}

    def step(self, action):
        self.t += 1
        return np.full(self.observation_space.shape, self.t, np.float32), 1.0, False, False, {}
'''


@pytest.fixture
def plugin(request, tmp_path, monkeypatch):
    """Write a plug-in module (a unique name per test) into a folder; returns (folder, name).

    The module is dropped from ``sys.modules`` afterwards, and ``sys.path`` must be unchanged.
    """
    name = f"mtrl_plugin_{request.node.name.removeprefix('test_')}"
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / f"{name}.py").write_text(PLUGIN)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path_before = list(sys.path)
    yield folder, name
    sys.modules.pop(name, None)
    assert sys.path == path_before


def write_suite(folder: Path, module: str) -> Path:
    path = folder / "my-suite.yaml"
    path.write_text(
        "kind: gym\nmax_episode_steps: 4\ntasks:\n  - Pendulum-v1\n"
        f"  - {{id: '{module}:PluginEnv', name: plug, kwargs: {{size: 3}}}}\n"
    )
    return path


def check_workers(suite, folder: Path) -> None:
    """One spawned worker builds and steps the plug-in env, importing it from ``folder``."""
    with Rollout(suite, num_workers=1, seed=0) as rollout:
        obs = rollout.reset()
        step = rollout.step(np.zeros((suite.num_tasks, suite.act_dim), np.float32))
        pid, source = rollout.call(operator.attrgetter("unwrapped.pid", "unwrapped.source"), [1])[0]
    assert obs.shape == (2, suite.obs_dim) and step.next_obs[1, :3].tolist() == [1, 1, 1]
    assert pid != os.getpid() and Path(source).parent == folder


def test_plugin_next_to_the_suite_yaml(plugin):
    folder, name = plugin
    suite = load_suite(str(write_suite(folder, name)))
    assert suite.task_names == ["Pendulum-v1", "plug"] and suite.raw_obs_dim == 3
    assert suite.specs[1].raw.args["folder"] == str(folder.resolve())
    assert str(folder) not in sys.path and str(folder.resolve()) not in sys.path
    obs, _ = suite.make_env(1).reset(seed=0)
    assert obs.tolist() == [0, 0, 0, 0, 1]
    # again, with the module now imported: the worker still needs (and gets) the folder
    again = load_suite(str(write_suite(folder, name)))
    assert again.specs[1].raw.args["folder"] == str(folder.resolve())
    check_workers(again, folder.resolve())


def test_plugin_in_the_current_directory(plugin, monkeypatch):
    folder, name = plugin
    monkeypatch.chdir(folder)
    tasks = [{"id": f"{name}:PluginEnv", "name": "plug"}, "Pendulum-v1"]
    suite = load_suite("pendulum", {"tasks": tasks, "max_episode_steps": 4})
    assert suite.specs[0].raw.args["folder"] == str(folder.resolve())
    env = suite.make_env(0)
    env.reset(seed=0)
    assert env.step(np.zeros(1, np.float32))[0][:3].tolist() == [1, 1, 1]


def test_plugin_registering_an_id_next_to_the_suite(plugin):
    folder, name = plugin
    env_id = f"{name}/Plug-v0"
    source = (folder / f"{name}.py").read_text()
    register = f"\ngym.register({env_id!r}, entry_point=PluginEnv, max_episode_steps=200)\n"
    (folder / f"{name}.py").write_text(source + register)
    path = folder / "registered.yaml"
    path.write_text(f"kind: gym\ntasks: [Pendulum-v1, {{id: '{name}:{env_id}', name: plug}}]\n")
    try:
        suite = load_suite(str(path))
        assert suite.max_episode_steps == 200  # its registered limit, as Pendulum-v1
        check_workers(suite, folder.resolve())
    finally:
        gym.registry.pop(env_id, None)


def test_missing_plugin_names_the_folders_searched(plugin):
    folder, _ = plugin
    path = write_suite(folder, "no_such_plugin_xyz")
    expected = (
        "cannot import module 'no_such_plugin_xyz' for task 'no_such_plugin_xyz:PluginEnv': "
        f"put its folder on PYTHONPATH (looked in: {folder.resolve()}, {Path.cwd()})"
    )
    with pytest.raises(MtrlError) as info:
        load_suite(str(path))
    assert str(info.value) == expected


def test_plugin_with_a_missing_dependency_says_which(plugin):
    folder, name = plugin
    (folder / f"{name}.py").write_text("import not_installed_dep_xyz\n")
    with pytest.raises(MtrlError, match=r"cannot import module .*No module named 'not_installed"):
        load_suite(str(write_suite(folder, name)))
