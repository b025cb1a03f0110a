"""Gymnasium envs that misbehave on demand, for the hang, NaN and divergence tests.

Plugged into a suite as ``plugin_envs:<Class>``; ``tests/conftest.py`` puts the tests directory
on ``sys.path``, and spawned workers inherit the parent's ``sys.path``.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from mtrl.envs.pointmass import PointMassEnv


def suite_tasks(env_id: str, **kwargs: Any) -> list[dict[str, Any]]:
    """Three Pendulum tasks with the plug-in env ``env_id`` third (task 2), named ``odd``."""
    return [
        {"id": "Pendulum-v1", "name": "pend-a"},
        {"id": "Pendulum-v1", "name": "pend-b"},
        {"id": f"plugin_envs:{env_id}", "name": "odd", "kwargs": kwargs},
    ]


class _Base(gym.Env):
    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(self) -> None:
        self.steps = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return np.zeros(3, np.float32), {}


class HangingEnv(_Base):
    """Sleeps ``seconds`` in its ``hang_step``-th step (1-based, over the env's life)."""

    def __init__(self, hang_step: int = 1, seconds: float = 60.0) -> None:
        super().__init__()
        self.hang_step, self.seconds = hang_step, seconds

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.steps += 1
        if self.steps == self.hang_step:
            time.sleep(self.seconds)
        return np.zeros(3, np.float32), 0.0, False, False, {"success": False}


class BadValueEnv(_Base):
    """Returns ``value`` (e.g. nan, inf, 1e38) in its reward or observation (``field``) from its
    ``from_step``-th step on (1-based, over the env's life; 0: its observations from reset on)."""

    def __init__(self, from_step: int = 1, value: float = float("nan"), field: str = "reward"):
        super().__init__()
        self.from_step, self.value, self.field = from_step, float(value), field

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = super().reset(seed=seed, options=options)
        if self.from_step == 0 and self.field == "obs":
            obs[1] = self.value
        return obs, info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.steps += 1
        obs, reward = np.zeros(3, np.float32), 0.0
        if self.steps >= self.from_step:
            if self.field == "reward":
                reward = self.value
            else:
                obs[1] = self.value
        return obs, reward, False, False, {"success": False}


class SignalingPointMass(PointMassEnv):
    """The cheap suite's point mass, sending SIGTERM to its own process at its ``signal_at``-th
    step unless ``marker`` exists (it creates it), so a resumed run is not stopped again."""

    def __init__(self, signal_at: int, marker: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.signal_at, self.marker, self.count = signal_at, Path(marker), 0

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.count += 1
        if self.count == self.signal_at and not self.marker.exists():
            self.marker.touch()
            os.kill(os.getpid(), signal.SIGTERM)
        return super().step(action)
