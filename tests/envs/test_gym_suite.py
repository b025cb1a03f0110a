"""Plugging in gymnasium envs: padding, action rescaling, errors."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from mtrl.envs import SuiteConfig, TaskConfig, list_suites, load_suite, suite_from_config
from mtrl.envs.wrappers import TaskEnvWrapper
from mtrl.errors import MtrlError


def _gym_suite(*tasks, **fields):
    return suite_from_config(SuiteConfig(kind="gym", name="t", tasks=list(tasks), **fields))


def test_presets_listed():
    suites = list_suites()
    for name in ("mt10", "mt50", "pendulum", "classic-control", "cheap4", "cheap16"):
        assert suites[name], f"{name} needs a description"


def test_padding_to_largest_observation():
    suite = load_suite("classic-control")
    assert suite.task_names == ["pendulum", "mountain-car"]
    assert (suite.raw_obs_dim, suite.obs_dim, suite.act_dim) == (3, 5, 1)
    obs, _ = suite.make_env(1).reset(seed=4)
    raw, _ = gym.make("MountainCarContinuous-v0").reset(seed=4)
    assert obs.shape == (5,) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[:2], raw)
    assert obs[2] == 0.0  # padding
    np.testing.assert_array_equal(obs[3:], [0.0, 1.0])
    obs, _ = suite.make_env(0).reset(seed=4)
    raw, _ = gym.make("Pendulum-v1").reset(seed=4)
    np.testing.assert_array_equal(obs, [*raw, 1.0, 0.0])


def test_pendulum_actions_rescaled_to_its_bounds():
    env = load_suite("pendulum").make_env(0)
    raw = gym.make("Pendulum-v1")
    assert raw.action_space.high[0] == 2.0
    env.reset(seed=0)
    raw.reset(seed=0)
    for unit, torque in [(0.5, 1.0), (-1.0, -2.0), (1.0, 2.0)]:
        obs, reward, *_ = env.step(np.array([unit], dtype=np.float32))
        raw_obs, raw_reward, *_ = raw.step(np.array([torque], dtype=np.float32))
        np.testing.assert_allclose(obs[:3], raw_obs, rtol=1e-6)
        assert reward == pytest.approx(raw_reward)


class _Recorder(gym.Env):
    """Records the actions it receives; asymmetric action bounds, 2x2 observations."""

    observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2, 2), dtype=np.float32)
    action_space = gym.spaces.Box(
        np.array([0.0, -3.0], dtype=np.float32), np.array([1.0, 5.0], dtype=np.float32)
    )

    def __init__(self):
        self.actions = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.arange(4, dtype=np.float32).reshape(2, 2), {}

    def step(self, action):
        self.actions.append(np.array(action))
        return np.ones((2, 2), dtype=np.float32), 0.0, False, False, {}


def test_wrapper_rescales_asymmetric_bounds_and_flattens():
    raw = _Recorder()
    env = TaskEnvWrapper(
        raw, task_index=1, num_tasks=3, padded_obs_size=6, max_episode_steps=2, seed=0
    )
    obs, _ = env.reset()
    np.testing.assert_array_equal(obs, [0, 1, 2, 3, 0, 0, 0, 1, 0])
    env.step(np.array([-1.0, 1.0]))
    _, _, terminated, truncated, info = env.step(np.array([0.0, 0.0]))
    np.testing.assert_allclose(raw.actions[0], [0.0, 5.0])
    np.testing.assert_allclose(raw.actions[1], [0.5, 1.0])
    assert info["success"] is False and terminated is False and truncated is True


def test_entry_point_needs_step_limit_and_takes_kwargs():
    entry = "gymnasium.envs.classic_control.pendulum:PendulumEnv"
    with pytest.raises(MtrlError, match="set max_episode_steps"):
        _gym_suite(TaskConfig(id=entry))
    suite = _gym_suite(TaskConfig(id=entry, kwargs={"g": 3.0}), max_episode_steps=7)
    env = suite.make_env(0)
    assert suite.task_names == ["PendulumEnv"] and env.unwrapped.g == 3.0


def test_mismatched_action_sizes_named():
    with pytest.raises(MtrlError) as err:
        _gym_suite("Pendulum-v1", "mtrl/PointMass-v0", max_episode_steps=10)
    message = str(err.value)
    assert "same action size" in message
    assert "Pendulum-v1: 1" in message and "mtrl/PointMass-v0: 2" in message
    assert "\n" not in message


def test_unknown_id_suggests_close_match():
    with pytest.raises(MtrlError, match=r"unknown gymnasium id 'Pendulum-v2'.*Pendulum-v1"):
        _gym_suite("Pendulum-v2")


def test_bad_entry_points():
    with pytest.raises(MtrlError, match=r"no class 'PendulumEnvv'.*PendulumEnv"):
        _gym_suite("gymnasium.envs.classic_control.pendulum:PendulumEnvv", max_episode_steps=5)
    with pytest.raises(MtrlError, match="cannot import module 'no_such_module_xyz'"):
        _gym_suite("no_such_module_xyz:Env", max_episode_steps=5)


def test_non_box_action_space_rejected():
    with pytest.raises(MtrlError, match=r"action space Discrete.*not a Box"):
        _gym_suite("CartPole-v1")


def test_bad_env_kwargs_reported():
    with pytest.raises(MtrlError, match=r"task 'Pendulum-v1': building the env failed"):
        _gym_suite(TaskConfig(id="Pendulum-v1", kwargs={"gravity": 1.0}))


def test_bad_config_key_and_unknown_preset():
    with pytest.raises(
        MtrlError, match=r"unknown config key 'suite.max_episode_step'.*max_episode_steps"
    ):
        load_suite("pendulum", {"max_episode_step": 10})
    with pytest.raises(MtrlError, match=r"unknown suite 'mt100'.*mt10"):
        load_suite("mt100")
    with pytest.raises(MtrlError, match=r"unknown suite kind 'gymm'.*gym"):
        load_suite("pendulum", {"kind": "gymm"})
    with pytest.raises(MtrlError, match="'num_tasks' does not apply to kind 'gym'"):
        load_suite("pendulum", {"num_tasks": 3})


def test_duplicate_names_rejected():
    with pytest.raises(MtrlError, match="appears twice"):
        _gym_suite("Pendulum-v1", "Pendulum-v1")


def test_yaml_path_and_dotted_override(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("kind: gym\ntasks: [Pendulum-v1, {id: MountainCarContinuous-v0, name: car}]\n")
    with pytest.raises(MtrlError, match="set max_episode_steps"):
        load_suite(str(path))
    suite = load_suite(str(path), {"max_episode_steps": 20})
    assert suite.name == "mine" and suite.task_names == ["Pendulum-v1", "car"]
    env = suite.make_env(1)
    env.reset(seed=0)
    truncs = [env.step(np.zeros(1, dtype=np.float32))[3] for _ in range(20)]
    assert truncs == [False] * 19 + [True]


def test_gym_env_deterministic_given_reset_seed():
    suite = load_suite("pendulum")
    a, b = suite.make_env(0), suite.make_env(0)
    np.testing.assert_array_equal(a.reset(seed=9)[0], b.reset(seed=9)[0])
    assert not np.array_equal(a.reset(seed=9)[0], b.reset(seed=10)[0])
