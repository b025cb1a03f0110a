"""``SuiteVecEnv``: a Stable-Baselines3 ``VecEnv`` over the T task envs of an mtrl suite.

One env per task, stepped by mtrl's ``Rollout`` (in-process or sharded over worker processes);
observations carry the task's one-hot, actions live in [-1, 1]. Any SB3 algorithm then trains
one multi-task policy on the suite::

    from stable_baselines3 import SAC
    from mtrl.baselines.sb3_vec_env import SuiteVecEnv
    from mtrl.envs import load_suite

    env = SuiteVecEnv(load_suite("mt10"), num_workers=2)
    SAC("MlpPolicy", env, seed=0).learn(10_000)  # SB3 counts all envs: 1,000 steps per task
    env.close()

SB3's conventions hold: a finished episode is reset in the same step, its true last observation
is ``infos[i]["terminal_observation"]``, ``infos[i]["TimeLimit.truncated"]`` marks a time-limit
end, ``infos[i]["is_success"]`` is the Meta-World episode success (the flag at any step) and
``infos[i]["episode"]`` its return and length (as SB3's ``Monitor`` reports them); every step's
info holds ``success`` (that step's flag).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvStepReturn

from mtrl.baselines import env_calls
from mtrl.envs import TaskSuite
from mtrl.rollout import Rollout, RolloutError, task_seed


class SuiteVecEnv(VecEnv):
    """A Stable-Baselines3 ``VecEnv`` with one env per task of ``suite`` (``num_envs = T``).

    ``get_attr``, ``set_attr``, ``env_method`` and ``env_is_wrapped`` reach the envs wherever
    they live (values travel pickled from worker processes). Rendering is not supported.

    :param suite: the task suite, e.g. ``load_suite("mt10")``.
    :param num_workers: rollout worker processes (0: step the envs in this process).
    :param seed: seed of the first reset (task i's env: ``task_seed(seed, i)``); ``seed(s)``
        reseeds the envs at the next ``reset()``, as SB3 algorithms do with their ``seed``.
    """

    def __init__(self, suite: TaskSuite, num_workers: int = 0, seed: int = 0) -> None:
        self.suite = suite
        self.task_names = list(suite.task_names)
        self.rollout = Rollout(suite, num_workers=num_workers, seed=seed)
        self._actions: np.ndarray | None = None
        self._next_seed: int | None = None
        self._started = time.monotonic()
        super().__init__(suite.num_tasks, suite.observation_space, suite.action_space)

    # -- stepping ---------------------------------------------------------------------

    def reset(self) -> np.ndarray:
        """Reset every task's env (reseeded if ``seed()`` was called) and return obs [T, obs]."""
        if any(self._options):
            raise NotImplementedError("SuiteVecEnv does not pass reset options to the envs")
        obs = self.rollout.reset(seed=self._next_seed)
        self._next_seed = None
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = [{} for _ in range(self.num_envs)]
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Keep the actions [T, act_dim] for ``step_wait``."""
        self._actions = np.asarray(actions, dtype=np.float32)

    def step_wait(self) -> VecEnvStepReturn:
        """Step every env; finished episodes are reset in place (SB3's autoreset)."""
        if self._actions is None:
            raise RolloutError("step_wait() without step_async()")
        actions, self._actions = self._actions, None
        result = self.rollout.step(actions)
        infos: list[dict[str, Any]] = [{"success": bool(s)} for s in result.success]
        for ep in result.episodes:
            i = ep.task
            infos[i]["terminal_observation"] = result.next_obs[i]
            infos[i]["TimeLimit.truncated"] = bool(result.truncated[i] and not result.terminated[i])
            infos[i]["is_success"] = ep.success
            infos[i]["episode"] = {
                "r": ep.episode_return,
                "l": ep.length,
                "t": round(time.monotonic() - self._started, 6),
            }
        dones = result.terminated | result.truncated
        return result.obs, result.reward, dones, infos

    def seed(self, seed: int | None = None) -> Sequence[int | None]:
        """Reseed the envs at the next ``reset()`` (task i: ``task_seed(seed, i)``)."""
        if seed is None:
            seed = int(np.random.randint(0, np.iinfo(np.uint32).max, dtype=np.uint32))
        self._next_seed = int(seed)
        return [task_seed(self._next_seed, i) for i in range(self.num_envs)]

    def close(self) -> None:
        """Stop the rollout workers and close the envs."""
        self.rollout.close()

    # -- reaching into the envs --------------------------------------------------------

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """The attribute of each env (through its wrapper stack); AttributeError if missing."""
        return self._call(functools.partial(env_calls.get_attr, name=attr_name), indices)

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set the attribute in each env, on the wrapper layer that has it."""
        self._call(functools.partial(env_calls.set_attr, name=attr_name, value=value), indices)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs
    ) -> list[Any]:
        """Call a method of each env with the given arguments; returns the results."""
        call = functools.partial(
            env_calls.call_method, name=method_name, args=method_args, kwargs=method_kwargs
        )
        return self._call(call, indices)

    def env_is_wrapped(
        self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        """Whether each env's wrapper stack holds a ``wrapper_class`` (SB3's ``Monitor``: no)."""
        name = env_calls.class_name(wrapper_class)
        return self._call(functools.partial(env_calls.is_wrapped, wrapper=name), indices)

    def get_images(self) -> Sequence[np.ndarray | None]:
        raise NotImplementedError("SuiteVecEnv does not render")

    def _call(self, function: Any, indices: VecEnvIndices) -> list[Any]:
        return self.rollout.call(function, self._get_indices(indices))
