"""Plain-data descriptions of one task's env, and the picklable function that builds it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from mtrl.envs.wrappers import TaskEnvWrapper


@dataclass(frozen=True)
class RawTask:
    """One task as a suite kind describes it, before padding and the one-hot are known.

    :param name: task name, unique within the suite.
    :param make: module-level function building the raw env from ``args`` (picklable by reference).
    :param args: plain-data keyword arguments for ``make``.
    :param obs_size: number of raw observation values (the Box flattened).
    :param act_dim: action size.
    """

    name: str
    make: Callable[..., gym.Env]
    args: dict[str, Any] = field(default_factory=dict)
    obs_size: int = 0
    act_dim: int = 0


@dataclass(frozen=True)
class EnvSpec:
    """Everything a worker process needs to build one fully wrapped task env."""

    raw: RawTask
    task_index: int
    num_tasks: int
    padded_obs_size: int
    max_episode_steps: int
    seed: int


def build_env(spec: EnvSpec) -> gym.Env:
    """Build the raw env of ``spec`` and wrap it (padding, one-hot, [-1, 1] actions, time limit)."""
    env = spec.raw.make(**spec.raw.args)
    return TaskEnvWrapper(
        env,
        task_index=spec.task_index,
        num_tasks=spec.num_tasks,
        padded_obs_size=spec.padded_obs_size,
        max_episode_steps=spec.max_episode_steps,
        seed=spec.seed,
    )
