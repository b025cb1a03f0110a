"""Evaluation with several envs per task: every task's episodes split evenly, one policy call
per step for all envs, rows task-major, independent of the worker count."""

import numpy as np
import pytest

from mtrl.envs import load_suite
from mtrl.evaluation import episode_quotas, evaluate


def test_episode_quotas_split_evenly():
    assert episode_quotas(10, 3) == [4, 3, 3]
    assert episode_quotas(50, 10) == [5] * 10
    assert episode_quotas(2, 1) == [2]


class CountingPolicy:
    """A fixed linear policy that checks each row's one-hot id and counts its calls."""

    def __init__(self, tasks: int, copies: int, act_dim: int) -> None:
        self.tasks, self.copies, self.calls = tasks, copies, 0
        self.weights = np.random.default_rng(0).normal(size=(act_dim,))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        rows_task = obs[:, -self.tasks :].argmax(axis=1)
        assert (rows_task == np.repeat(np.arange(self.tasks), self.copies)).all()
        return np.tanh(obs[:, :1] * self.weights).astype(np.float32)


@pytest.mark.parametrize("copies", [1, 3])
def test_several_envs_per_task_take_one_policy_call_per_step(copies):
    suite = load_suite("cheap4", {"max_episode_steps": 20}, seed=0)
    policy = CountingPolicy(suite.num_tasks, copies, suite.act_dim)
    result = evaluate(policy, suite, episodes=6, seed=5, envs_per_task=copies)
    assert result.success.shape == result.returns.shape == (suite.num_tasks,)
    assert result.episodes == 6
    # cheap4 episodes run to the time limit under this policy: 6 / copies episodes per env
    assert policy.calls == 20 * 6 // copies


def test_batched_evaluation_does_not_depend_on_workers():
    suite = load_suite("cheap4", {"max_episode_steps": 20}, seed=0)
    results = [
        evaluate(
            CountingPolicy(4, 3, suite.act_dim), suite, 5, seed=1, num_workers=w, envs_per_task=3
        )
        for w in (0, 2)
    ]
    np.testing.assert_array_equal(results[0].returns, results[1].returns)
    np.testing.assert_array_equal(results[0].success, results[1].success)
    # the copies are seeded apart: the tasks' returns are averages of different episodes
    single = evaluate(CountingPolicy(4, 1, suite.act_dim), suite, 5, seed=1)
    assert not np.array_equal(single.returns, results[0].returns)
