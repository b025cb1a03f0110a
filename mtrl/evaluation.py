"""Deterministic evaluation with the Meta-World success protocol.

N episodes per task on env instances separate from training; an episode succeeds if the
success flag was set at any of its steps; success and return are reported per task and averaged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
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


@dataclass(frozen=True)
class Replicas:
    """``copies`` envs of every task of ``suite`` as one suite for a Rollout, task-major: env j
    runs task ``j // copies`` (its observations carry that task's one-hot id)."""

    suite: TaskSuite
    copies: int

    @property
    def num_tasks(self) -> int:
        return self.suite.num_tasks * self.copies

    @property
    def task_names(self) -> list[str]:
        return [name for name in self.suite.task_names for _ in range(self.copies)]

    @property
    def obs_dim(self) -> int:
        return self.suite.obs_dim

    @property
    def act_dim(self) -> int:
        return self.suite.act_dim

    def env_factory(self, env: int) -> Callable[[], gym.Env]:
        return self.suite.env_factory(env // self.copies)


def episode_quotas(episodes: int, copies: int) -> list[int]:
    """Episodes each of a task's ``copies`` envs runs: ``episodes`` split as evenly as can be."""
    return [episodes // copies + (j < episodes % copies) for j in range(copies)]


def evaluate(
    policy: Policy,
    suite: TaskSuite,
    episodes: int,
    seed: int,
    num_workers: int = 0,
    timeout: float = 120.0,
    envs_per_task: int = 1,
) -> EvalResult:
    """Run ``policy`` until every task has finished ``episodes`` episodes.

    With ``envs_per_task`` = k > 1, each task's episodes are split over k envs stepped together
    (one policy call per step for all T x k envs, spread over the workers); each env counts
    its first ``episode_quotas`` episodes, so short (e.g. successful) episodes are not favoured.

    :param policy: maps observations [T, obs] to actions [T, act] (deterministic for the protocol).
    :param suite: the task suite; fresh envs are built for the evaluation.
    :param episodes: episodes per task.
    :param seed: env seed of this evaluation (see ``eval_seed``).
    :param num_workers: rollout worker processes for the evaluation envs.
    :param timeout: seconds the envs may take to answer one step or reset (``step_timeout``).
    :param envs_per_task: envs per task stepped together (at most ``episodes``); env c of
        task t is seeded as env ``t * k + c`` of ``Rollout(seed)``; 1 is one env per task
        running its episodes one after another.
    :raises RolloutError: if an env raises, hangs or returns NaN or inf (named as in evaluation).
    """
    copies = max(1, min(envs_per_task, episodes))
    envs = Replicas(suite, copies) if copies > 1 else suite
    quota = episode_quotas(episodes, copies) * suite.num_tasks
    success: list[list[float]] = [[] for _ in quota]
    returns: list[list[float]] = [[] for _ in quota]
    with Rollout(envs, num_workers=num_workers, seed=seed, timeout=timeout) as rollout:
        try:
            obs = rollout.reset()
            while any(len(s) < q for s, q in zip(success, quota, strict=True)):
                result = rollout.step(policy(obs))
                obs = result.obs
                for ep in result.episodes:
                    if len(success[ep.task]) < quota[ep.task]:
                        success[ep.task].append(float(ep.success))
                        returns[ep.task].append(ep.episode_return)
        except NonFiniteEnvError as exc:
            raise exc.at(exc.step, "evaluation ") from None

    def task_means(values: list[list[float]]) -> np.ndarray:
        # every env of a task ran its quota, so the task's mean is over all its episodes
        per_env = np.array([np.sum(v) for v in values]).reshape(suite.num_tasks, copies)
        return per_env.sum(axis=1) / episodes

    return EvalResult(list(suite.task_names), task_means(success), task_means(returns), episodes)
