"""Deterministic evaluation with the Meta-World success protocol.

N episodes per task on env instances separate from training; an episode succeeds if the
success flag was set at any of its steps; success and return are reported per task and averaged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mtrl.envs import TaskSuite
from mtrl.rollout import NonFiniteEnvError, Rollout

Policy = Callable[[np.ndarray], np.ndarray]


@dataclass
class EvalResult:
    """Per-task success rate and mean return over the evaluated episodes."""

    task_names: list[str]
    success: np.ndarray
    returns: np.ndarray
    episodes: int

    @property
    def success_mean(self) -> float:
        return float(self.success.mean())

    @property
    def return_mean(self) -> float:
        return float(self.returns.mean())

    def metrics(self) -> dict[str, float]:
        """Flat metric names: ``eval/success/<task>``, ``eval/success_mean``, ``eval/return/...``."""
        row = {"eval/success_mean": self.success_mean, "eval/return_mean": self.return_mean}
        for name, s, r in zip(self.task_names, self.success, self.returns, strict=True):
            row[f"eval/success/{name}"] = float(s)
            row[f"eval/return/{name}"] = float(r)
        return row


def eval_seed(seed: int, index: int) -> int:
    """The env seed of evaluation number ``index`` of a run: disjoint from the training stream."""
    return int(np.random.SeedSequence([seed, 1, index]).generate_state(1, dtype=np.uint32)[0])


def evaluate(
    policy: Policy,
    suite: TaskSuite,
    episodes: int,
    seed: int,
    num_workers: int = 0,
    timeout: float = 120.0,
) -> EvalResult:
    """Run ``policy`` until every task has finished ``episodes`` episodes; count the first N.

    :param policy: maps observations [T, obs] to actions [T, act] (deterministic for the protocol).
    :param suite: the task suite; fresh envs are built for the evaluation.
    :param episodes: episodes per task.
    :param seed: env seed of this evaluation (see ``eval_seed``).
    :param num_workers: rollout worker processes for the evaluation envs.
    :param timeout: seconds the envs may take to answer one step or reset (``step_timeout``).
    :raises RolloutError: if an env raises, hangs or returns NaN or inf (named as in evaluation).
    """
    tasks = suite.num_tasks
    success = [[] for _ in range(tasks)]
    returns = [[] for _ in range(tasks)]
    with Rollout(suite, num_workers=num_workers, seed=seed, timeout=timeout) as rollout:
        try:
            obs = rollout.reset()
            while min(len(s) for s in success) < episodes:
                result = rollout.step(policy(obs))
                obs = result.obs
                for ep in result.episodes:
                    if len(success[ep.task]) < episodes:
                        success[ep.task].append(float(ep.success))
                        returns[ep.task].append(ep.episode_return)
        except NonFiniteEnvError as exc:
            raise exc.at(exc.step, "evaluation ") from None
    return EvalResult(
        list(suite.task_names),
        np.array([np.mean(s) for s in success]),
        np.array([np.mean(r) for r in returns]),
        episodes,
    )
