"""The one wrapper every suite env goes through: a common observation and action interface."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def suite_observation_space(padded_obs_size: int, num_tasks: int) -> gym.spaces.Box:
    """Observation space shared by all tasks: unbounded raw values, then a [0, 1] one-hot."""
    low = np.concatenate([np.full(padded_obs_size, -np.inf), np.zeros(num_tasks)])
    high = np.concatenate([np.full(padded_obs_size, np.inf), np.ones(num_tasks)])
    return gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)


def task_ids(obs: np.ndarray, num_tasks: int) -> np.ndarray:
    """The task of each row of suite observations [N, obs]: the index of its one-hot id (the
    last ``num_tasks`` values), so rows may come in any order and number per task."""
    return obs[:, -num_tasks:].argmax(axis=1)


def unit_action_space(act_dim: int) -> gym.spaces.Box:
    """The [-1, 1]^act_dim float32 action space all suite envs expose."""
    return gym.spaces.Box(-1.0, 1.0, shape=(act_dim,), dtype=np.float32)


class TaskEnvWrapper(gym.Wrapper):
    """Give a raw task env the suite interface, in a single layer so stepping stays cheap.

    - observations: float32, the raw observation flattened, zero-padded to ``padded_obs_size``,
      then the task's one-hot of length ``num_tasks``;
    - actions: taken in [-1, 1] and rescaled linearly to the raw env's Box bounds;
    - ``info["success"]``: always present (False when the env reports none);
    - ``truncated=True`` once ``max_episode_steps`` steps have been taken since the last reset;
    - seeding: ``reset(seed=s)`` seeds the env and the action space; a first reset without a seed
      uses ``seed``, so an env is deterministic even if its user never seeds it.
    """

    def __init__(
        self,
        env: gym.Env,
        task_index: int,
        num_tasks: int,
        padded_obs_size: int,
        max_episode_steps: int,
        seed: int,
    ) -> None:
        super().__init__(env)
        raw_act = env.action_space
        assert isinstance(raw_act, gym.spaces.Box), "suite builders reject non-Box actions"
        self.task_index = task_index
        self.max_episode_steps = max_episode_steps
        self._raw_obs_size = int(np.prod(env.observation_space.shape))
        self._template = np.zeros(padded_obs_size + num_tasks, dtype=np.float32)
        self._template[padded_obs_size + task_index] = 1.0
        low = raw_act.low.astype(np.float64).ravel()
        high = raw_act.high.astype(np.float64).ravel()
        self._rescale = not (np.all(low == -1.0) and np.all(high == 1.0))
        self._act_low, self._act_half = low, (high - low) / 2.0
        self._act_shape = raw_act.shape
        self._act_dtype = raw_act.dtype
        self.observation_space = suite_observation_space(padded_obs_size, num_tasks)
        self.action_space = unit_action_space(low.size)
        self._default_seed: int | None = seed
        self._steps = 0

    def _observation(self, raw: Any) -> np.ndarray:
        obs = self._template.copy()
        obs[: self._raw_obs_size] = np.asarray(raw).ravel()
        return obs

    def _action(self, action: Any) -> np.ndarray:
        if not self._rescale:
            return np.asarray(action, dtype=self._act_dtype).reshape(self._act_shape)
        unit = np.clip(np.asarray(action, dtype=np.float64).ravel(), -1.0, 1.0)
        raw = self._act_low + (unit + 1.0) * self._act_half
        return raw.astype(self._act_dtype).reshape(self._act_shape)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset the task env; see the class docstring for how seeds are used."""
        if seed is None:
            seed, self._default_seed = self._default_seed, None
        else:
            self._default_seed = None
        if seed is not None:
            self.action_space.seed(seed)
        obs, info = self.env.reset(seed=seed, options=options)
        self._steps = 0
        info.setdefault("success", False)
        return self._observation(obs), info

    def get_state(self) -> dict[str, Any] | None:
        """The env's full state for a checkpoint, or None if the task env cannot provide it.

        A task env opts in by defining ``get_state()``/``set_state(state)`` on its unwrapped
        class (the cheap suite does); others (Meta-World, most gymnasium envs) return None.
        """
        inner = self.env.unwrapped
        if self.env is not inner or not hasattr(inner, "get_state"):
            return None  # intermediate wrappers (e.g. a TimeLimit) would hold state too
        return {
            "steps": self._steps,
            "default_seed": self._default_seed,
            "action_space": self.action_space.np_random.bit_generator.state,
            "env": inner.get_state(),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned."""
        self._steps = int(state["steps"])
        self._default_seed = state["default_seed"]
        self.action_space.np_random.bit_generator.state = state["action_space"]
        self.env.unwrapped.set_state(state["env"])

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Step with an action in [-1, 1]; adds ``info["success"]`` and the suite's time limit."""
        obs, reward, terminated, truncated, info = self.env.step(self._action(action))
        self._steps += 1
        if self._steps >= self.max_episode_steps:
            truncated = True
        if "success" not in info:
            info["success"] = False
        return self._observation(obs), float(reward), bool(terminated), bool(truncated), info
