"""Evaluation with several envs per task: every task's episodes split evenly, one policy call
per step for the envs still running, rows copy-major, episodes ended at a success, independent
of the worker count."""

import numpy as np
import pytest

from mtrl.cli import main
from mtrl.envs import load_suite
from mtrl.envs.experts import MetaWorldExperts
from mtrl.evaluation import Evaluator, episode_quotas, evaluate
from mtrl.logging import read_metrics
from mtrl.rollout import task_seed


def test_episode_quotas_split_evenly():
    assert episode_quotas(10, 3) == [4, 3, 3]
    assert episode_quotas(50, 10) == [5] * 10
    assert episode_quotas(2, 1) == [2]


class ObsPolicy:
    """A fixed policy of the observations (deterministic, so equal envs give equal episodes)."""

    def __init__(self, obs_dim: int, act_dim: int) -> None:
        self.weights = np.random.default_rng(3).normal(size=(obs_dim, act_dim)) / obs_dim

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        return np.tanh(obs @ self.weights).astype(np.float32)


class CountingPolicy:
    """A fixed linear policy that counts its calls and the rows of each, and checks that a call
    with every env's row has them copy-major (row c * T + t: copy c of task t)."""

    def __init__(self, tasks: int, copies: int, act_dim: int) -> None:
        self.tasks, self.copies, self.calls, self.rows = tasks, copies, 0, []
        self.weights = np.random.default_rng(0).normal(size=(act_dim,))

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.rows.append(len(obs))
        if len(obs) == self.tasks * self.copies:
            rows_task = obs[:, -self.tasks :].argmax(axis=1)
            assert (rows_task == np.tile(np.arange(self.tasks), self.copies)).all()
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


@pytest.mark.parametrize("workers", [0, 2])
def test_envs_that_ran_their_share_of_episodes_are_not_stepped(workers):
    """10 episodes on 3 envs per task: 4, 3 and 3 each, so 10 episodes' steps per task and
    not 12 (every env stepping until the last has run its 4); the policy sees only the rows of
    the envs still running."""
    suite = load_suite("cheap4", {"max_episode_steps": 20}, seed=0)
    policy = CountingPolicy(suite.num_tasks, 3, suite.act_dim)
    kwargs = {"num_workers": workers, "envs_per_task": 3, "end_on_success": False}
    with Evaluator(suite, 10, **kwargs) as evaluator:
        evaluator(policy, 2)
        steps = evaluator._rollout.step_counts().reshape(3, suite.num_tasks)
        assert evaluator(policy, 3).env_steps == 10 * 20 * suite.num_tasks  # on the kept envs
    assert policy.calls == 2 * 4 * 20
    assert policy.rows == 2 * ([12] * 60 + [4] * 20)
    np.testing.assert_array_equal(steps, [[80] * 4, [60] * 4, [60] * 4])


def test_ending_on_success_keeps_the_success_rates_and_saves_env_steps():
    """Meta-World's reach with its scripted policy, 50-step episodes: some succeed in time, some
    do not; ending each at its first success gives the same success rate in fewer env steps,
    with returns up to the success."""
    suite = load_suite("mt1-reach", {"max_episode_steps": 50}, seed=0)
    experts = MetaWorldExperts(suite)
    results, steps = {}, {}
    for end in (False, True):
        with Evaluator(suite, 8, envs_per_task=2, end_on_success=end) as evaluator:
            results[end] = evaluator(experts, 4)
            steps[end] = results[end].env_steps
            assert steps[end] == evaluator._rollout.step_counts().sum()
    assert 0 < results[False].success[0] < 1
    np.testing.assert_array_equal(results[True].success, results[False].success)
    assert steps[False] == 8 * 50
    assert steps[True] < steps[False]
    assert results[True].returns[0] < results[False].returns[0]
    assert results[True].episodes == results[False].episodes == 8


class HalfSeeker(ObsPolicy):
    """Heads for the goal on cheap4's first two tasks (goals at 0 and 90 degrees, the second
    with inverted actions), as ``ObsPolicy`` on the others."""

    def __init__(self, suite) -> None:
        super().__init__(suite.obs_dim, suite.act_dim)
        self.tasks = suite.num_tasks

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        actions = super().__call__(obs)
        task = obs[:, -self.tasks :].argmax(axis=1)
        goals, signs = 0.7 * np.eye(2), np.array([[1.0], [-1.0]])
        seek = task < 2
        toward = goals[task[seek]] - obs[seek, :2]
        actions[seek] = np.clip(10 * signs[task[seek]] * toward, -1, 1)
        return actions


def test_each_copy_runs_its_share_as_a_lone_env_seeded_by_its_row_would():
    """Envs per task, copy-major (row c * T + t is copy c of task t, seeded as row c * T + t of
    a Rollout), each running its quota of episodes, ending at a success: replayed env by env."""
    suite = load_suite("cheap4", {"max_episode_steps": 12}, seed=0)
    policy, T, copies, episodes, seed = HalfSeeker(suite), 4, 2, 3, 9
    result = evaluate(policy, suite, episodes, seed, envs_per_task=copies)
    success, returns = np.zeros(T), np.zeros(T)
    for c, quota in enumerate(episode_quotas(episodes, copies)):
        for t in range(T):
            env = suite.make_env(t)
            obs, _ = env.reset(seed=task_seed(seed, c * T + t))
            for _ in range(quota):
                done = solved = False
                while not done:
                    obs, reward, term, trunc, info = env.step(policy(obs[None])[0])
                    returns[t] += float(np.float32(reward))
                    solved = solved or info["success"]
                    done = term or trunc or info["success"]
                success[t] += solved
                obs, _ = env.reset()
    np.testing.assert_allclose(result.returns, returns / episodes, rtol=1e-12)
    np.testing.assert_array_equal(result.success, success / episodes)
    np.testing.assert_array_equal(result.success, [1, 1, 0, 0])  # some end early


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


@pytest.mark.parametrize(
    ("name", "overrides", "workers"),
    [("mt1-reach", {"max_episode_steps": 12}, 0), ("cheap4", {"max_episode_steps": 20}, 2)],
)
def test_kept_envs_evaluate_as_fresh_ones(name, overrides, workers):
    """A real Meta-World env (in process) and cheap ones (in workers): evaluations on envs kept
    between them, reseeded each time, equal evaluations on new envs, seed for seed (after an
    evaluation its envs have already begun their next episodes)."""
    suite = load_suite(name, overrides, seed=0)
    policy = ObsPolicy(suite.obs_dim, suite.act_dim)
    seeds = [7, 8, 7]
    with Evaluator(suite, 3, num_workers=workers, envs_per_task=2) as evaluator:
        kept = [evaluator(policy, s) for s in seeds]
    fresh = [evaluate(policy, suite, 3, s, num_workers=workers, envs_per_task=2) for s in seeds]
    for a, b in zip(kept, fresh, strict=True):
        np.testing.assert_array_equal(a.returns, b.returns)
        np.testing.assert_array_equal(a.success, b.success)
    assert not np.array_equal(kept[0].returns, kept[1].returns)  # the seed matters


def test_an_error_closes_the_kept_envs_and_the_next_call_starts_new_ones():
    suite = load_suite("cheap4", {"max_episode_steps": 20}, seed=0)
    policy = ObsPolicy(suite.obs_dim, suite.act_dim)

    def broken(obs: np.ndarray) -> np.ndarray:
        raise KeyboardInterrupt

    with Evaluator(suite, 2, num_workers=1) as evaluator:
        first = evaluator(policy, 1)
        pids = evaluator._rollout.pids
        with pytest.raises(KeyboardInterrupt):
            evaluator(broken, 1)
        assert evaluator._rollout is None
        again = evaluator(policy, 1)
        assert evaluator._rollout.pids != pids
    np.testing.assert_array_equal(first.returns, again.returns)
    once = Evaluator(suite, 2, num_workers=1, keep=False)
    np.testing.assert_array_equal(once(policy, 1).returns, first.returns)
    assert once._rollout is None  # closed after the call


def test_a_run_evaluates_the_same_on_kept_and_on_new_envs(tmp_path):
    """eval.keep_envs=true (the default) and false: the same evaluations, row for row."""
    rows = {}
    for keep in ("true", "false"):
        out = tmp_path / keep
        args = ["quickstart", "steps=40", "warmup=20", "eval.every=10", "eval.episodes=3"]
        args += ["eval.envs_per_task=2", "eval.num_workers=1", f"eval.keep_envs={keep}"]
        args += ["agent.hidden=[16, 16]", "agent.batch_size=8", "suite.max_episode_steps=15"]
        args += ["logger.progress=false", "torch_threads=1", f"out={out}"]
        assert main(["train", *args]) == 0
        (run,) = out.iterdir()
        rows[keep] = [
            {k: v for k, v in row.items() if k.startswith("eval/")}
            for row in read_metrics(run / "metrics.jsonl")
        ]
    evaluated = [row for row in rows["true"] if row]
    assert len(evaluated) == 4 and len({row["eval/return_mean"] for row in evaluated}) > 1
    assert all(0 < row["eval/env_steps"] <= 4 * 3 * 15 for row in evaluated)
    assert rows["true"] == rows["false"]
