"""A gymnasium env that raises on demand, for the rollout fault tests.

Plugged into a suite as ``rollout_faulty_env:FaultyEnv``; the tests directory is on
``sys.path`` under pytest, and spawned workers inherit the parent's ``sys.path``.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np


class FaultyEnv(gym.Env):
    """Zero observations; raises (or ends its process) at a chosen step or reset.

    :param fail_step: 1-based count of steps (over the env's life) at which ``step`` raises.
    :param fail_reset: 1-based count of resets at which ``reset`` raises.
    :param exit_step: 1-based count of steps at which the process exits with status 3.
    :param nan_step: 1-based count of steps at which the reward is NaN (a diverging task).
    :param only_in_pid: raise in the constructor in any process but this one (0: never), so
        the suite's probe in the parent succeeds and the workers' construction fails.
    """

    observation_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
    action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def __init__(
        self,
        fail_step: int = 0,
        fail_reset: int = 0,
        exit_step: int = 0,
        only_in_pid: int = 0,
        nan_step: int = 0,
    ) -> None:
        if only_in_pid and os.getpid() != only_in_pid:
            raise OSError(f"cannot build in process {os.getpid()}\nsecond line of the message")
        self.fail_step = fail_step
        self.exit_step = exit_step
        self.fail_reset = fail_reset
        self.nan_step = nan_step
        self.steps = 0
        self.resets = 0

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        self.resets += 1
        if self.resets == self.fail_reset:
            raise ValueError(f"reset {self.resets} went wrong\nsecond line of the message")
        return np.zeros(3, np.float32), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        self.steps += 1
        if self.steps == self.fail_step:
            raise RuntimeError(f"step {self.steps} went wrong\nsecond line of the message")
        if self.steps == self.exit_step:
            os._exit(3)
        reward = float("nan") if self.steps == self.nan_step else 0.0
        return np.zeros(3, np.float32), reward, False, False, {"success": False}
