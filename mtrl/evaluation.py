"""Deterministic evaluation with the Meta-World success protocol.

N episodes per task on env instances separate from training; an episode succeeds if the
success flag was set at any of its steps; success and return are reported per task and averaged.
As in Meta-World's own ``metaworld.evaluation``, an episode ends at its first success
(``eval.end_on_success``): the steps after it cannot change its success, and a policy that
solves its tasks then costs a fraction of the protocol's env steps. Its return is then the
return up to the success. Envs that have run their share of the episodes wait for the others
without being stepped.

A run evaluates many times (MT10's protocol: 100 times), so its evaluation envs are kept from
one evaluation to the next (``Evaluator``) and reseeded for each as fresh envs would be:
starting the worker processes and building 100 Meta-World envs took about 13 s of each 76 s
evaluation on 2 cores (BENCHMARKS.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import gymnasium as gym
import numpy as np

from mtrl.envs import TaskSuite
from mtrl.rollout import NonFiniteEnvError, Rollout

if TYPE_CHECKING:
    from mtrl.config import TrainConfig

Policy = Callable[[np.ndarray], np.ndarray]
"""Observations [N, obs] -> actions [N, act]; a row's task is its one-hot id (the last T
values), and an evaluation passes only the rows of the envs still running."""


@dataclass
class EvalResult:
    """Per-task success rate and mean return over the evaluated episodes."""

    task_names: list[str]
    success: np.ndarray
    returns: np.ndarray
    episodes: int
    env_steps: int | None = None
    """Env steps the evaluation took, all tasks together (None where not known, e.g. read back
    from a metrics file)."""

    @property
    def success_mean(self) -> float:
        return float(self.success.mean())

    @property
    def return_mean(self) -> float:
        return float(self.returns.mean())

    def metrics(self) -> dict[str, float]:
        """Flat metric names: ``eval/success/<task>``, ``eval/success_mean``, ``eval/return/...``
        and, where known, ``eval/env_steps``."""
        row = {"eval/success_mean": self.success_mean, "eval/return_mean": self.return_mean}
        if self.env_steps is not None:
            row["eval/env_steps"] = float(self.env_steps)
        for name, s, r in zip(self.task_names, self.success, self.returns, strict=True):
            row[f"eval/success/{name}"] = float(s)
            row[f"eval/return/{name}"] = float(r)
        return row


def eval_seed(seed: int, index: int) -> int:
    """The env seed of evaluation number ``index`` of a run: disjoint from the training stream."""
    return int(np.random.SeedSequence([seed, 1, index]).generate_state(1, dtype=np.uint32)[0])


@dataclass(frozen=True)
class Replicas:
    """``copies`` envs of every task of ``suite`` as one suite for a Rollout, copy-major: env j
    runs task ``j % T`` (its observations carry that task's one-hot id) as copy ``j // T``.

    Copy-major, every worker's contiguous shard holds copies of every task, so the load stays
    balanced while tasks finish their episodes at different times (task-major, a worker whose
    tasks all succeed early would wait idle for the others)."""

    suite: TaskSuite
    copies: int

    @property
    def num_tasks(self) -> int:
        return self.suite.num_tasks * self.copies

    @property
    def task_names(self) -> list[str]:
        return list(self.suite.task_names) * self.copies

    @property
    def obs_dim(self) -> int:
        return self.suite.obs_dim

    @property
    def act_dim(self) -> int:
        return self.suite.act_dim

    def env_factory(self, env: int) -> Callable[[], gym.Env]:
        return self.suite.env_factory(env % self.suite.num_tasks)


def episode_quotas(episodes: int, copies: int) -> list[int]:
    """Episodes each of a task's ``copies`` envs runs: ``episodes`` split as evenly as can be."""
    return [episodes // copies + (j < episodes % copies) for j in range(copies)]


class Evaluator:
    """Evaluations of a policy on envs kept from one evaluation to the next.

    The first call starts the worker processes and builds the envs; every call reseeds them as
    a fresh ``Rollout(envs, seed)`` would be seeded, so an evaluation gives what ``evaluate``
    gives on new envs (tested). An error or interrupt inside an evaluation closes the envs (a
    later call starts new ones), and so does every call without ``keep``. Use it as a context
    manager, or call ``close``.

    :param suite: the task suite.
    :param episodes: episodes per task of every evaluation.
    :param num_workers: rollout worker processes for the evaluation envs.
    :param timeout: seconds the envs may take to answer one step or reset (``step_timeout``).
    :param envs_per_task: envs per task stepped together (at most ``episodes``); env c of
        task t is seeded as env ``c * T + t`` of ``Rollout(seed)``; 1 is one env per task
        running its episodes one after another.
    :param keep: keep the envs from one call to the next (False: close them after each).
    :param end_on_success: end each episode at its first success (the success rates are the
        same; the returns are up to the success); False runs every episode to its time limit.
    """

    def __init__(
        self,
        suite: TaskSuite,
        episodes: int,
        num_workers: int = 0,
        timeout: float = 120.0,
        envs_per_task: int = 1,
        keep: bool = True,
        end_on_success: bool = True,
    ) -> None:
        self.suite, self.episodes, self.keep = suite, episodes, keep
        self.end_on_success = end_on_success
        self.num_workers, self.timeout = num_workers, timeout
        self.copies = max(1, min(envs_per_task, episodes))
        self._envs = Replicas(suite, self.copies) if self.copies > 1 else suite
        self._rollout: Rollout | None = None

    def __call__(self, policy: Policy, seed: int) -> EvalResult:
        """Run ``policy`` until every task has finished its episodes, on envs seeded by ``seed``
        (see ``eval_seed``).

        With k envs per task, each task's episodes are split over its k envs stepped together
        (one policy call per step for the running ones of all T x k envs, spread over the
        workers); each env counts its first ``episode_quotas`` episodes, so short (e.g.
        successful) episodes are not favoured, and is not stepped once it has run them.

        :param policy: maps the observations of the envs still running [N, obs] to actions
            [N, act], each row's task being its one-hot id (deterministic for the protocol).
        :raises RolloutError: if an env raises, hangs or returns NaN or inf (named as in
            evaluation).
        """
        suite, copies = self.suite, self.copies
        quota = [q for q in episode_quotas(self.episodes, copies) for _ in range(suite.num_tasks)]
        success: list[list[float]] = [[] for _ in quota]
        returns: list[list[float]] = [[] for _ in quota]
        try:
            rollout = self.start(seed)
            obs = rollout.reset(seed=seed)
            steps_before = int(rollout.step_counts().sum())
            active = np.ones(len(quota), dtype=bool)
            while active.any():
                actions = np.zeros((len(obs), suite.act_dim), dtype=np.float32)
                actions[active] = policy(obs[active])
                result = rollout.step(actions, active)
                obs = result.obs
                for ep in result.episodes:
                    success[ep.task].append(float(ep.success))
                    returns[ep.task].append(ep.episode_return)
                    active[ep.task] = len(success[ep.task]) < quota[ep.task]
            env_steps = int(rollout.step_counts().sum()) - steps_before
        except NonFiniteEnvError as exc:
            self.close()
            raise exc.at(exc.step, "evaluation ") from None
        except BaseException:
            self.close()  # the envs are in no known state
            raise
        if not self.keep:
            self.close()

        def task_means(values: list[list[float]]) -> np.ndarray:
            # every env of a task ran its quota, so the task's mean is over all its episodes
            per_env = np.array([np.sum(v) for v in values]).reshape(copies, suite.num_tasks)
            return per_env.sum(axis=0) / self.episodes

        return EvalResult(
            list(suite.task_names),
            task_means(success),
            task_means(returns),
            self.episodes,
            env_steps,
        )

    def start(self, seed: int = 0) -> Rollout:
        """The envs and worker processes, started here unless kept from an earlier call (what
        the first evaluation of a run pays for, before its first step)."""
        if self._rollout is None:
            self._rollout = Rollout(
                self._envs,
                num_workers=self.num_workers,
                seed=seed,
                timeout=self.timeout,
                end_on_success=self.end_on_success,
            )
        return self._rollout

    def close(self) -> None:
        """Stop the worker processes and close the envs (a later call starts new ones)."""
        if self._rollout is not None:
            rollout, self._rollout = self._rollout, None
            rollout.close()

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def run_evaluator(suite: TaskSuite, cfg: TrainConfig) -> Evaluator:
    """The evaluations a run's config asks for (``cfg.eval``, ``cfg.step_timeout``); nothing
    starts before the first call."""
    e = cfg.eval
    return Evaluator(
        suite,
        e.episodes,
        e.num_workers,
        cfg.step_timeout,
        e.envs_per_task,
        e.keep_envs,
        e.end_on_success,
    )


def evaluate(
    policy: Policy,
    suite: TaskSuite,
    episodes: int,
    seed: int,
    num_workers: int = 0,
    timeout: float = 120.0,
    envs_per_task: int = 1,
    end_on_success: bool = True,
) -> EvalResult:
    """Run ``policy`` until every task has finished ``episodes`` episodes, on new envs that are
    closed afterwards (one ``Evaluator`` call; see it for the parameters).

    :param seed: env seed of this evaluation (see ``eval_seed``).
    """
    evaluator = Evaluator(
        suite, episodes, num_workers, timeout, envs_per_task, False, end_on_success
    )
    return evaluator(policy, seed)
