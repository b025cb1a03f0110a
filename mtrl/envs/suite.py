"""``TaskSuite``: an ordered set of tasks with one observation and action interface."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import gymnasium as gym

from mtrl.configtools import preset_path
from mtrl.envs import gym_tasks, metaworld_tasks, pointmass
from mtrl.envs.config import PRESET_DIR, SuiteConfig, load_suite_config
from mtrl.envs.spec import EnvSpec, RawTask, build_env
from mtrl.envs.wrappers import suite_observation_space, unit_action_space
from mtrl.errors import MtrlError, close_matches

KindBuilder = Callable[[SuiteConfig, int], tuple[list[RawTask], int]]
"""Turns a config and seed into the raw tasks and the episode length."""

KINDS: dict[str, KindBuilder] = {
    "metaworld": metaworld_tasks.build_tasks,
    "gym": gym_tasks.build_tasks,
    "cheap": pointmass.build_tasks,
}
"""Suite kinds by name; ``register_kind`` adds one."""


def register_kind(name: str, builder: KindBuilder) -> None:
    """Make ``kind: <name>`` available in suite configs."""
    KINDS[name] = builder


class TaskSuite:
    """An ordered set of tasks whose envs share observation and action spaces.

    Observations are the raw observation zero-padded to the suite's largest raw size, then the
    task's one-hot (at the end); actions live in [-1, 1]^act_dim. Anything expensive (Meta-World
    goal sampling) happens once here; ``env_factory`` hands out plain data only.
    """

    def __init__(
        self,
        name: str,
        tasks: list[RawTask],
        max_episode_steps: int,
        seed: int = 0,
        config: SuiteConfig | None = None,
    ) -> None:
        if not tasks:
            raise MtrlError(f"suite {name!r} has no tasks")
        act_dims = {t.act_dim for t in tasks}
        if len(act_dims) != 1:
            sizes = ", ".join(f"{t.name}: {t.act_dim}" for t in tasks)
            raise MtrlError(
                f"suite {name!r}: tasks need the same action size after rescaling to [-1, 1], "
                f"got {sizes}"
            )
        if max_episode_steps < 1:
            raise MtrlError(f"suite {name!r}: max_episode_steps must be >= 1")
        self.name = name
        self.config = config
        self.seed = seed
        self.task_names = [t.name for t in tasks]
        self.num_tasks = len(tasks)
        self.raw_obs_dim = max(t.obs_size for t in tasks)
        self.obs_dim = self.raw_obs_dim + self.num_tasks
        self.act_dim = act_dims.pop()
        self.max_episode_steps = max_episode_steps
        self.observation_space = suite_observation_space(self.raw_obs_dim, self.num_tasks)
        self.action_space = unit_action_space(self.act_dim)
        self.specs = [
            EnvSpec(
                raw=t,
                task_index=i,
                num_tasks=self.num_tasks,
                padded_obs_size=self.raw_obs_dim,
                max_episode_steps=max_episode_steps,
                seed=seed + i,
            )
            for i, t in enumerate(tasks)
        ]

    def env_factory(self, task: int) -> Callable[[], gym.Env]:
        """A picklable zero-argument callable building the wrapped env of task ``task``."""
        if not 0 <= task < self.num_tasks:
            raise IndexError(f"task {task} out of range for {self.num_tasks} tasks")
        return functools.partial(build_env, self.specs[task])

    def make_env(self, task: int) -> gym.Env:
        """Build the wrapped env of task ``task`` in this process."""
        return self.env_factory(task)()

    def __repr__(self) -> str:
        return (
            f"TaskSuite({self.name!r}, tasks={self.num_tasks}, obs_dim={self.obs_dim}, "
            f"act_dim={self.act_dim}, max_episode_steps={self.max_episode_steps})"
        )


def suite_from_config(cfg: SuiteConfig, seed: int = 0) -> TaskSuite:
    """Build a ``TaskSuite`` from a typed config; ``seed`` fixes goals and default env seeds."""
    builder = KINDS.get(cfg.kind)
    if builder is None:
        raise MtrlError(
            f"unknown suite kind {cfg.kind!r}{close_matches(cfg.kind, KINDS)}; "
            f"kinds: {', '.join(KINDS)}"
        )
    tasks, max_steps = builder(cfg, seed)
    return TaskSuite(cfg.name or cfg.kind, tasks, max_steps, seed=seed, config=cfg)


def load_suite(
    name_or_path: str, overrides: Mapping[str, Any] | None = None, seed: int = 0
) -> TaskSuite:
    """Load a preset (``envs/<name>.yaml``) or a YAML file, apply overrides, build the suite.

    A ``module:Class`` task not on ``sys.path`` is looked for next to the YAML file, then in the
    current directory.
    """
    cfg = load_suite_config(name_or_path, overrides)
    with gym_tasks.suite_dir(preset_path(name_or_path, PRESET_DIR, "suite").parent):
        return suite_from_config(cfg, seed)
