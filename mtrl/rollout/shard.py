"""A shard: the envs of a contiguous range of tasks, stepped in lockstep.

Used as is for ``num_workers=0`` and inside each worker process, so both give identical
results. Reads actions from and writes results into :class:`SharedArrays`. Must not import
torch (workers import it at start-up).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from time import perf_counter
from typing import Any

import numpy as np

from mtrl.errors import one_line
from mtrl.rollout.buffers import BUSY_PHASES, SharedArrays

CONSTRUCTION, RESET, STEP = (BUSY_PHASES.index(p) for p in ("construction", "reset", "step"))


class EnvFault(Exception):
    """An env raised; carries the task index, the phase and the one-line message."""

    def __init__(self, task: int, phase: str, message: str) -> None:
        super().__init__(task, phase, message)
        self.task = task
        self.phase = phase
        self.message = message


class Shard:
    """Envs of tasks ``start .. start + len(factories) - 1`` writing into ``arrays``.

    :param factories: zero-arg callables building each task's env.
    :param start: index of the first task of the shard on the task axis.
    :param seeds: seed of each env's first reset.
    :param arrays: the shared arrays (all T tasks; the shard touches only its rows).
    :param end_on_success: end an episode at the first step whose ``info["success"]`` is set,
        reported as ``terminated`` (Meta-World's evaluation protocol; never for training).
    :raises EnvFault: if building an env raises.
    """

    def __init__(
        self,
        factories: Sequence[Callable[[], Any]],
        start: int,
        seeds: Sequence[int],
        arrays: SharedArrays,
        end_on_success: bool = False,
    ) -> None:
        self.start = start
        self.end_on_success = end_on_success
        self.stop = start + len(factories)
        self.arrays = arrays
        self._seeds: list[int | None] = list(seeds)
        self.envs: list[Any] = []
        busy = arrays.busy
        for j, factory in enumerate(factories):
            busy[start + j] = CONSTRUCTION
            try:
                self.envs.append(factory())
            except Exception as exc:
                self.close()
                raise EnvFault(start + j, "construction", one_line(exc)) from exc
            busy[start + j] = 0
        self._clear_episodes()

    def _clear_episodes(self) -> None:
        """Zero the running return, length and success of every env's episode."""
        n = len(self.envs)
        self._returns = [0.0] * n
        self._lengths = [0] * n
        self._successes = [False] * n

    def reseed(self, seeds: Sequence[int]) -> None:
        """Seed each env's next reset with ``seeds`` (as the first reset of a new shard)."""
        self._seeds = list(seeds)

    def call(self, function: Callable[[Any], Any], tasks: Sequence[int]) -> list[Any]:
        """``function(env)`` for each of ``tasks`` (indices on the suite's task axis)."""
        return [function(self.envs[i - self.start]) for i in tasks]

    def reset(self) -> None:
        """Reset every env (seeded on the first reset only) and write ``obs``."""
        a = self.arrays
        for j, env in enumerate(self.envs):
            a.busy[self.start + j] = RESET
            try:
                obs, _ = env.reset(seed=self._seeds[j])
            except Exception as exc:
                raise EnvFault(self.start + j, "reset", one_line(exc)) from exc
            a.busy[self.start + j] = 0
            self._seeds[j] = None
            a.obs[self.start + j] = obs
        self._clear_episodes()

    def step(self) -> None:
        """Step every env whose ``active`` flag is set with its row of ``actions``; reset
        finished envs in the same step. An inactive env is left as it is: its ``next_obs`` is
        its current observation, its reward 0 and its flags false."""
        a = self.arrays
        rows = slice(self.start, self.stop)
        actions = a.actions[rows].copy()  # envs must not hold views the parent overwrites
        active = a.active[rows].copy()
        n = len(self.envs)
        rewards = np.empty(n, dtype=np.float32)
        terms = [False] * n
        truncs = [False] * n
        succs = [False] * n
        returns, lengths, successes = self._returns, self._lengths, self._successes
        times = np.empty(n)
        busy = a.busy
        for j, env in enumerate(self.envs):
            i = self.start + j
            if not active[j]:
                rewards[j], times[j] = 0.0, 0.0
                a.next_obs[i] = a.obs[i]
                continue
            busy[i] = STEP
            start = perf_counter()
            try:
                obs, reward, term, trunc, info = env.step(actions[j])
            except Exception as exc:
                raise EnvFault(i, "step", one_line(exc)) from exc
            times[j] = perf_counter() - start
            busy[i] = 0
            rewards[j] = reward
            success = bool(info.get("success", False))
            term = bool(term) or (self.end_on_success and success)
            terms[j], truncs[j], succs[j] = term, bool(trunc), success
            returns[j] += float(rewards[j])
            lengths[j] += 1
            successes[j] = successes[j] or success
            a.next_obs[i] = obs
            if term or trunc:
                a.episode_return[i] = returns[j]
                a.episode_length[i] = lengths[j]
                a.episode_success[i] = successes[j]
                returns[j], lengths[j], successes[j] = 0.0, 0, False
                busy[i] = RESET
                try:
                    obs, _ = env.reset()
                except Exception as exc:
                    raise EnvFault(i, "reset", one_line(exc)) from exc
                busy[i] = 0
            a.obs[i] = obs
        a.reward[rows] = rewards
        a.terminated[rows] = terms
        a.truncated[rows] = truncs
        a.success[rows] = succs
        a.step_time[rows] += times
        a.step_count[rows] += active

    def get_state(self) -> list[dict[str, Any] | None]:
        """Each env's state with its running episode statistics, for a checkpoint.

        An entry is None where the env cannot save its state (no ``get_state`` method or it
        returned None): such envs can only restart their episodes on resume.
        """
        states: list[dict[str, Any] | None] = []
        for j, env in enumerate(self.envs):
            getter = getattr(env, "get_state", None)
            env_state = getter() if getter is not None else None
            if env_state is None:
                states.append(None)
                continue
            states.append(
                {
                    "env": env_state,
                    "episode": (self._returns[j], self._lengths[j], self._successes[j]),
                    "seed": self._seeds[j],
                }
            )
        return states

    def set_state(self, states: Sequence[dict[str, Any]]) -> None:
        """Restore what ``get_state`` returned (every entry must be a state, not None)."""
        for j, (env, state) in enumerate(zip(self.envs, states, strict=True)):
            try:
                env.set_state(state["env"])
            except Exception as exc:
                raise EnvFault(self.start + j, "set_state", one_line(exc)) from exc
            ret, length, success = state["episode"]
            self._returns[j], self._lengths[j], self._successes[j] = ret, length, success
            self._seeds[j] = state["seed"]

    def close(self) -> None:
        """Close every env, ignoring errors (used on shutdown)."""
        for env in self.envs:
            with contextlib.suppress(Exception):
                env.close()
        self.envs = []
