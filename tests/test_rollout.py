"""Tests of the sharded rollout workers on the real suites (Meta-World MT10, the cheap suite)."""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import operator
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtrl.envs import TaskSuite, load_suite
from mtrl.envs.experts import MetaWorldExperts
from mtrl.errors import MtrlError
from mtrl.evaluation import evaluate
from mtrl.rollout import (
    NonFiniteEnvError,
    Rollout,
    RolloutError,
    StepResult,
    estimated_costs,
    shard_bounds,
    task_seed,
)
from mtrl.rollout.alarm import Expired, time_limit
from mtrl.rollout.sharding import META_WORLD_STEP_MS

TESTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = TESTS_DIR.parent
EPISODE = 5  # steps per episode in the short cheap suite


def alive(pid: int) -> bool:
    """True if process ``pid`` exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def assert_no_workers(pids: list[int]) -> None:
    assert pids, "expected worker pids to check"
    assert [pid for pid in pids if alive(pid)] == []
    assert [p for p in multiprocessing.active_children() if p.pid in pids] == []


def random_actions(rng: np.random.Generator, suite: TaskSuite) -> np.ndarray:
    return rng.uniform(-1, 1, (suite.num_tasks, suite.act_dim)).astype(np.float32)


def trajectory(suite: TaskSuite, num_workers: int, seed: int, steps: int) -> list[np.ndarray]:
    """Every array a rollout returns over ``steps`` steps of fixed random actions."""
    rng = np.random.default_rng(123)
    with Rollout(suite, num_workers=num_workers, seed=seed) as rollout:
        arrays = [rollout.reset()]
        for _ in range(steps):
            r = rollout.step(random_actions(rng, suite))
            arrays += [r.next_obs, r.obs, r.reward, r.terminated, r.truncated, r.success]
            arrays.append(np.array([(e.task, e.episode_return, e.length) for e in r.episodes]))
    return arrays


def faulty_suite(env: str = "rollout_faulty_env:FaultyEnv", **fault: Any) -> TaskSuite:
    """Pendulum tasks plus, at index 2, ``env`` (a ``FaultyEnv``) misbehaving as ``fault`` says."""
    tasks = [
        {"id": "Pendulum-v1", "name": "pend-a"},
        {"id": "Pendulum-v1", "name": "pend-b"},
        {"id": env, "name": "faulty", "kwargs": fault},
        {"id": "Pendulum-v1", "name": "pend-c"},
    ]
    return load_suite("classic-control", overrides={"tasks": tasks, "max_episode_steps": 3})


@pytest.fixture(scope="module")
def mt10() -> TaskSuite:
    return load_suite("mt10", seed=0)


@pytest.fixture(scope="module")
def cheap() -> TaskSuite:
    return load_suite("cheap4", overrides={"max_episode_steps": EPISODE}, seed=0)


def test_mt10_shapes_and_n0_equals_n2(mt10: TaskSuite) -> None:
    T, obs_dim = mt10.num_tasks, mt10.obs_dim
    results = {}
    for n in (0, 2):
        rng = np.random.default_rng(0)
        with Rollout(mt10, num_workers=n, seed=0) as rollout:
            assert rollout.num_workers == n
            obs = rollout.reset()
            assert obs.shape == (T, obs_dim) and obs.dtype == np.float32
            np.testing.assert_array_equal(obs[:, -T:], np.eye(T, dtype=np.float32))
            steps = [rollout.step(random_actions(rng, mt10)) for _ in range(3)]
            seconds = rollout.step_seconds()
            assert seconds.shape == (T,) and np.all(seconds > 0)
            if n == 2:  # cut by the Meta-World cost table: reach, push, pick-place are slow
                assert rollout.shards == [(0, 3), (3, 10)]
        r = steps[-1]
        assert isinstance(r, StepResult)
        for name in ("next_obs", "obs"):
            assert getattr(r, name).shape == (T, obs_dim)
            assert getattr(r, name).dtype == np.float32
        assert r.reward.shape == (T,) and r.reward.dtype == np.float32
        for name in ("terminated", "truncated", "success"):
            assert getattr(r, name).shape == (T,) and getattr(r, name).dtype == np.bool_
        assert r.episodes == []
        np.testing.assert_array_equal(r.obs, r.next_obs)  # no episode ended yet
        assert not np.array_equal(steps[0].next_obs, steps[-1].next_obs)
        results[n] = [obs] + [s.next_obs for s in steps] + [s.reward for s in steps]
    for a, b in zip(results[0], results[2], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_autoreset_keeps_final_obs_and_episode_stats(cheap: TaskSuite, num_workers: int) -> None:
    """Replay each task with its own env and compare every step, across two episode ends."""
    seed, steps = 7, 2 * EPISODE + 2
    rng = np.random.default_rng(1)
    actions = [random_actions(rng, cheap) for _ in range(steps)]
    with Rollout(cheap, num_workers=num_workers, seed=seed) as rollout:
        first = rollout.reset()
        results = [rollout.step(a) for a in actions]
    for i in range(cheap.num_tasks):
        env = cheap.make_env(i)
        obs, _ = env.reset(seed=task_seed(seed, i))
        np.testing.assert_array_equal(first[i], obs)
        rewards: list[float] = []
        for t, r in enumerate(results):
            obs, reward, terminated, truncated, info = env.step(actions[t][i])
            rewards.append(float(np.float32(reward)))
            np.testing.assert_array_equal(r.next_obs[i], obs)
            assert r.reward[i] == np.float32(reward)
            assert (r.terminated[i], r.truncated[i], r.success[i]) == (
                terminated,
                truncated,
                info["success"],
            )
            ended = [e for e in r.episodes if e.task == i]
            if (t + 1) % EPISODE == 0:
                assert truncated
                assert not np.array_equal(r.obs[i], r.next_obs[i])
                obs, _ = env.reset()
                (episode,) = ended
                assert episode.task_name == cheap.task_names[i]
                assert episode.length == EPISODE
                assert episode.episode_return == pytest.approx(sum(rewards), rel=1e-9)
                rewards = []
            else:
                assert ended == []
            np.testing.assert_array_equal(r.obs[i], obs)
        env.close()


@pytest.mark.parametrize("num_workers", [0, 2])
def test_inactive_envs_wait_unstepped_and_go_on_where_they_stopped(
    cheap: TaskSuite, num_workers: int
) -> None:
    """Pausing envs (across episode ends too) changes only when they step: each env's own
    sequence of steps equals that of a rollout stepping every env every time."""
    T, seed, vector_steps = cheap.num_tasks, 5, 4 * EPISODE
    rng = np.random.default_rng(2)
    own_actions = rng.uniform(-1, 1, (vector_steps, T, cheap.act_dim)).astype(np.float32)
    masks = rng.random((vector_steps, T)) < 0.6
    masks[0] = [True, False, True, False]  # env 1 and 3 wait from the first step on
    own: list[list[tuple]] = [[] for _ in range(T)]
    with Rollout(cheap, num_workers=num_workers, seed=seed) as rollout:
        obs = rollout.reset()
        count = np.zeros(T, dtype=int)
        for active in masks:
            r = rollout.step(own_actions[count, np.arange(T)], active)
            for i in np.flatnonzero(~active):
                np.testing.assert_array_equal(r.next_obs[i], obs[i])
                np.testing.assert_array_equal(r.obs[i], obs[i])
                assert (r.reward[i], r.terminated[i], r.truncated[i], r.success[i]) == (0, 0, 0, 0)
            assert all(active[e.task] for e in r.episodes)
            for i in np.flatnonzero(active):
                ended = [(e.episode_return, e.length) for e in r.episodes if e.task == i]
                own[i].append((r.next_obs[i], r.obs[i], r.reward[i], r.truncated[i], ended))
            count += active
            obs = r.obs
        np.testing.assert_array_equal(rollout.step_counts(), count)
    with Rollout(cheap, num_workers=0, seed=seed) as everyone:
        everyone.reset()
        every = [everyone.step(own_actions[k]) for k in range(count.max())]
    for i in range(T):
        assert len(own[i]) == count[i] > 0
        for k, (next_obs, obs_i, reward, truncated, ended) in enumerate(own[i]):
            r = every[k]
            np.testing.assert_array_equal(next_obs, r.next_obs[i])
            np.testing.assert_array_equal(obs_i, r.obs[i])
            assert (reward, truncated) == (r.reward[i], r.truncated[i])
            assert ended == [(e.episode_return, e.length) for e in r.episodes if e.task == i]
    assert count.max() > EPISODE  # some env went through an episode end


def test_end_on_success_ends_an_episode_at_its_first_success() -> None:
    """Meta-World's reach with its scripted policy: the same steps up to the first success, the
    episode ends there as terminated, and the next one starts as it would after the full one."""
    limit = 150
    suite = load_suite("mt1-reach", {"max_episode_steps": limit}, seed=0)
    experts = MetaWorldExperts(suite)
    runs: dict[bool, list[StepResult]] = {}
    for end in (False, True):
        with Rollout(suite, seed=3, end_on_success=end) as rollout:
            obs, results = rollout.reset(), []
            while sum(len(r.episodes) for r in results) < 2:
                results.append(rollout.step(experts(obs)))
                obs = results[-1].obs
        runs[end] = results
    full, ended = runs[False], runs[True]
    first = next(k for k, r in enumerate(full) if r.success[0])
    assert first + 1 < limit
    for a, b in zip(full[: first + 1], ended[: first + 1], strict=True):
        np.testing.assert_array_equal(a.next_obs, b.next_obs)
        np.testing.assert_array_equal(a.reward, b.reward)
    assert ended[first].terminated[0] and not ended[first].truncated[0]
    (episode,) = ended[first].episodes
    assert (episode.length, episode.success) == (first + 1, True)
    (whole,) = full[limit - 1].episodes
    assert (whole.length, whole.success) == (limit, True)
    assert whole.episode_return > episode.episode_return
    assert not full[first].terminated[0] and full[first].episodes == []
    np.testing.assert_array_equal(ended[first].obs, full[limit - 1].obs)  # the next start
    assert len(ended) < len(full)


def test_seeding_repeats_and_does_not_depend_on_workers(cheap: TaskSuite) -> None:
    steps = EPISODE + 2
    base = trajectory(cheap, 0, seed=3, steps=steps)
    for other in (trajectory(cheap, 0, 3, steps), trajectory(cheap, 2, 3, steps)):
        assert len(other) == len(base)
        for a, b in zip(base, other, strict=True):
            np.testing.assert_array_equal(a, b)
    different = trajectory(cheap, 0, seed=4, steps=steps)
    assert not np.array_equal(base[0], different[0])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_reset_with_a_seed_restarts_like_a_new_rollout(cheap: TaskSuite, num_workers: int) -> None:
    rng = np.random.default_rng(0)
    with (
        Rollout(cheap, num_workers=num_workers, seed=3) as rollout,
        Rollout(cheap, num_workers=0, seed=7) as fresh,
    ):
        rollout.reset()
        rollout.step(random_actions(rng, cheap))
        np.testing.assert_array_equal(rollout.reset(seed=7), fresh.reset())
        actions = random_actions(rng, cheap)
        np.testing.assert_array_equal(rollout.step(actions).next_obs, fresh.step(actions).next_obs)


def test_call_reaches_envs_in_workers_and_reraises(cheap: TaskSuite) -> None:
    task_index = operator.attrgetter("task_index")  # picklable, like SB3's get_attr helpers
    with Rollout(cheap, num_workers=2, seed=0) as rollout:
        rollout.reset()
        assert rollout.call(task_index) == [0, 1, 2, 3]
        assert rollout.call(task_index, [3, 0, 2]) == [3, 0, 2]
        with pytest.raises(AttributeError, match="nope"):
            rollout.call(operator.attrgetter("nope"), [1])
        with pytest.raises(IndexError):
            rollout.call(task_index, [4])
        rollout.step(np.zeros((cheap.num_tasks, cheap.act_dim), np.float32))  # still usable
        assert rollout.call(task_index, [1]) == [1]


def test_shard_bounds_are_contiguous_and_balanced() -> None:
    assert shard_bounds([1.0] * 10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert shard_bounds([1.0] * 4, 4) == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert shard_bounds([5.0, 1.0, 1.0, 1.0, 1.0, 1.0], 2) == [(0, 1), (1, 6)]
    costs = list(META_WORLD_STEP_MS.values())  # MT50, in Meta-World's order
    for n in range(1, 9):
        bounds = shard_bounds(costs, n)
        assert bounds[0][0] == 0 and bounds[-1][1] == len(costs)
        assert all(a < b for a, b in bounds)  # non-empty
        assert all(b == c for (_, b), (c, _) in itertools.pairwise(bounds))  # contiguous
        loads = [sum(costs[a:b]) for a, b in bounds]
        assert max(loads) <= sum(costs) / n + max(costs)  # within one task of perfect
    even_split = max(sum(costs[:25]), sum(costs[25:]))
    assert max(sum(costs[a:b]) for a, b in shard_bounds(costs, 2)) < 0.85 * even_split
    with pytest.raises(ValueError):
        shard_bounds([1.0, 1.0], 3)


def test_estimated_costs_and_override(cheap: TaskSuite) -> None:
    assert estimated_costs(["goal0", "goal1"]) == [1.0, 1.0]
    assert estimated_costs(["push-v3", "mystery"]) == [0.66, 0.66]
    with Rollout(cheap, num_workers=2, task_costs=[1.0, 1.0, 1.0, 10.0]) as rollout:
        assert rollout.shards == [(0, 3), (3, 4)]
        assert len(rollout.pids) == 2
    with pytest.raises(MtrlError, match="task_costs"):
        Rollout(cheap, num_workers=2, task_costs=[1.0])


def test_task_seed_depends_on_seed_and_task_only() -> None:
    seeds = {task_seed(s, i) for s in range(3) for i in range(50)}
    assert len(seeds) == 150
    assert task_seed(5, 2) == task_seed(5, 2)


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize(
    ("fault", "phase", "text"),
    [
        ({"fail_step": 2}, "step", "RuntimeError: step 2 went wrong"),
        ({"fail_reset": 2}, "reset", "ValueError: reset 2 went wrong"),
    ],
)
def test_env_fault_names_task_and_worker(
    num_workers: int, fault: dict[str, int], phase: str, text: str
) -> None:
    suite = faulty_suite(**fault)  # episodes of 3 steps: the second reset is an autoreset
    rollout = Rollout(suite, num_workers=num_workers, seed=0)
    pids = rollout.pids
    rollout.reset()
    with pytest.raises(RolloutError) as info:
        for _ in range(5):
            rollout.step(np.zeros((4, 1), np.float32))
    message = str(info.value)
    assert isinstance(info.value, MtrlError)
    assert "'faulty'" in message and f"during {phase}" in message and text in message
    assert "second line" not in message
    assert ("worker 1" if num_workers else "in-process") in message
    assert rollout.closed
    with pytest.raises(RolloutError, match="closed"):
        rollout.step(np.zeros((4, 1), np.float32))
    if num_workers:
        assert_no_workers(pids)


@pytest.mark.parametrize("num_workers", [0, 2])
@pytest.mark.parametrize(
    ("field", "value", "text"),
    [
        ("reward", float("nan"), "NaN in its reward"),
        ("obs", float("-inf"), "inf in its observation"),
    ],
)
def test_non_finite_env_output_names_task_and_step(
    num_workers: int, field: str, value: float, text: str
) -> None:
    suite = faulty_suite("plugin_envs:BadValueEnv", from_step=4, field=field, value=value)
    with Rollout(suite, num_workers=num_workers, seed=0) as rollout:
        rollout.reset()
        for _ in range(3):
            rollout.step(np.zeros((4, 1), np.float32))
        with pytest.raises(NonFiniteEnvError) as info:
            rollout.step(np.zeros((4, 1), np.float32))
        assert isinstance(info.value, MtrlError)
        assert str(info.value) == (
            f"the env of task 'faulty' (task 2) returned {text} at step 4 "
            "(a bug in the env or its wrapper, not a training divergence)"
        )
        assert str(info.value.at(104)).count("at step 104 ") == 1  # as the trainer counts
        assert not rollout.closed
        with pytest.raises(NonFiniteEnvError, match="at step 5 "):
            rollout.step(np.zeros((4, 1), np.float32))


def test_non_finite_reset_and_evaluation_steps_are_named() -> None:
    suite = faulty_suite("plugin_envs:BadValueEnv", from_step=0, field="obs")
    with (
        Rollout(suite, num_workers=0, seed=0) as rollout,
        pytest.raises(
            NonFiniteEnvError,
            match=r"'faulty' \(task 2\) returned NaN in its observation at reset \(",
        ),
    ):
        rollout.reset()
    suite = faulty_suite("plugin_envs:BadValueEnv", from_step=2)
    with pytest.raises(
        NonFiniteEnvError, match=r"returned NaN in its reward at evaluation step 2 \("
    ):
        evaluate(lambda obs: np.zeros((4, 1), np.float32), suite, episodes=1, seed=0)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_hanging_env_is_an_error_naming_it_after_the_timeout(num_workers: int) -> None:
    suite = faulty_suite("plugin_envs:HangingEnv", hang_step=2, seconds=60)
    rollout = Rollout(suite, num_workers=num_workers, seed=0, timeout=1)
    pids = rollout.pids
    rollout.reset()
    rollout.step(np.zeros((4, 1), np.float32))
    start = time.monotonic()
    with pytest.raises(RolloutError) as info:
        rollout.step(np.zeros((4, 1), np.float32))
    where = "worker 1" if num_workers else "in-process"
    assert str(info.value) == (
        f"env of task 'faulty' (task 2, {where}) did not return from step within 1 s (step_timeout)"
    )
    assert time.monotonic() - start < 3  # the hung worker is killed, not waited for
    assert rollout.closed
    if num_workers:
        assert_no_workers(pids)


def test_time_limit_keeps_an_outer_timer_and_its_handler() -> None:
    saved_handler = signal.getsignal(signal.SIGALRM)  # pytest-timeout's, if it uses signals
    saved_timer = signal.getitimer(signal.ITIMER_REAL)
    fired: list[float] = []

    def outer(signum: int, frame: Any) -> None:
        fired.append(time.monotonic())

    try:
        signal.signal(signal.SIGALRM, outer)
        start = time.monotonic()
        signal.setitimer(signal.ITIMER_REAL, 0.2)  # due before the limit: fires, in its turn
        with pytest.raises(Expired), time_limit(0.5):
            time.sleep(5)
        assert len(fired) == 1 and 0.15 < fired[0] - start < 0.45
        assert 0.45 < time.monotonic() - start < 2
        signal.setitimer(signal.ITIMER_REAL, 10.0)  # due after: re-armed once the block ends
        with time_limit(1.0):
            time.sleep(0.01)
        assert 9.0 < signal.getitimer(signal.ITIMER_REAL)[0] <= 10.0
        assert signal.getsignal(signal.SIGALRM) is outer and len(fired) == 1
    finally:
        signal.setitimer(signal.ITIMER_REAL, *saved_timer)
        signal.signal(signal.SIGALRM, saved_handler)


def test_env_construction_fault_in_worker() -> None:
    suite = faulty_suite(only_in_pid=os.getpid())
    with pytest.raises(RolloutError) as info:
        Rollout(suite, num_workers=2, seed=0)
    message = str(info.value)
    assert "'faulty'" in message and "worker 1" in message and "during construction" in message
    assert "OSError: cannot build in process" in message
    assert [p for p in multiprocessing.active_children() if p.name.startswith("mtrl-")] == []


def test_killed_worker_is_an_error_within_seconds(cheap: TaskSuite) -> None:
    rollout = Rollout(cheap, num_workers=2, seed=0)
    pids = rollout.pids
    rollout.reset()
    os.kill(pids[1], signal.SIGKILL)
    deadline = time.monotonic() + 5
    while alive(pids[1]) and time.monotonic() < deadline:  # dead before the step writes to it
        time.sleep(0.01)
    start = time.monotonic()
    with pytest.raises(RolloutError) as info:
        for _ in range(100):
            rollout.step(np.zeros((cheap.num_tasks, cheap.act_dim), np.float32))
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert "worker 1" in message and "SIGKILL" in message
    assert all(name in message for name in cheap.task_names[2:])
    assert rollout.closed
    assert_no_workers(pids)


def test_worker_exiting_mid_step_is_an_error() -> None:
    rollout = Rollout(faulty_suite(exit_step=2), num_workers=2, seed=0)
    pids = rollout.pids
    rollout.reset()
    with pytest.raises(RolloutError, match=r"worker 1 \(tasks faulty, pend-c\) died during step"):
        for _ in range(3):
            rollout.step(np.zeros((4, 1), np.float32))
    assert rollout.closed
    assert_no_workers(pids)


def test_close_and_garbage_collection_leave_no_workers(cheap: TaskSuite) -> None:
    rollout = Rollout(cheap, num_workers=2, seed=0)
    pids = rollout.pids
    rollout.reset()
    rollout.close()
    rollout.close()  # idempotent
    assert_no_workers(pids)
    rollout = Rollout(cheap, num_workers=2, seed=0)
    pids = rollout.pids
    del rollout
    gc.collect()
    assert_no_workers(pids)


def test_bad_calls_are_clear_errors(cheap: TaskSuite) -> None:
    with Rollout(cheap, num_workers=0) as rollout:
        with pytest.raises(RolloutError, match="reset"):
            rollout.step(np.zeros((cheap.num_tasks, cheap.act_dim)))
        rollout.reset()
        with pytest.raises(ValueError, match="shape"):
            rollout.step(np.zeros((cheap.num_tasks + 1, cheap.act_dim)))
        with pytest.raises(ValueError, match="active must have shape"):
            rollout.step(np.zeros((cheap.num_tasks, cheap.act_dim)), np.ones(2, dtype=bool))
        with pytest.raises(RolloutError, match="without step_async"):
            rollout.step_wait()
        rollout.step_async(np.zeros((cheap.num_tasks, cheap.act_dim)))
        with pytest.raises(RolloutError, match="twice"):
            rollout.step_async(np.zeros((cheap.num_tasks, cheap.act_dim)))
        with pytest.raises(RolloutError, match="step is in progress"):
            rollout.reset()
        assert rollout.step_wait().obs.shape == (cheap.num_tasks, cheap.obs_dim)
    with pytest.raises(MtrlError):
        Rollout(cheap, num_workers=-1)


SCRIPT = """
import signal
import sys
import numpy as np
# as launched from a terminal: a shell without job control (a CI job run in the background)
# starts its children with SIGINT ignored, and Python keeps that
signal.signal(signal.SIGINT, signal.default_int_handler)
from mtrl.envs import load_suite
from mtrl.rollout import Rollout
suite = load_suite("cheap4")
rollout = Rollout(suite, num_workers=2, seed=0)
rollout.reset()
print(*rollout.pids, flush=True)
while sys.argv[1] == "loop":
    rollout.step(np.zeros((suite.num_tasks, suite.act_dim), np.float32))
"""


@pytest.mark.parametrize("ending", ["ctrl-c", "sigterm", "exit-without-close"])
def test_process_end_leaves_no_orphans(ending: str) -> None:
    """Ctrl-C or SIGTERM to the process group (as a terminal or a scheduler sends them), or a
    plain exit: workers ignore both signals, and leave when the parent does."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, "exit" if ending.startswith("exit") else "loop"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) == 2, proc.stderr.read() if proc.stderr else ""
        if ending != "exit-without-close":
            time.sleep(0.3)  # let it step for a while
            os.killpg(proc.pid, signal.SIGINT if ending == "ctrl-c" else signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if ending == "ctrl-c":
        assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
    elif ending == "sigterm":
        assert proc.returncode == -signal.SIGTERM, stderr  # no handler in this script
    else:
        assert proc.returncode == 0, stderr
    # Only the parent's KeyboardInterrupt: workers ignore SIGINT and exit quietly.
    assert stderr.count("Traceback") == (1 if ending == "ctrl-c" else 0), stderr
    time.sleep(0.2)
    assert [pid for pid in pids if alive(pid)] == []


def test_worker_module_does_not_import_torch() -> None:
    code = "import sys, mtrl.rollout.worker; print('torch' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"
