"""Meta-World suites: real MT10 built once per module, a few steps per test."""

from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest

from mtrl.envs import load_suite
from mtrl.envs.metaworld_tasks import draw_goals
from mtrl.errors import MtrlError

MT10_NAMES = [
    "reach-v3",
    "push-v3",
    "pick-place-v3",
    "door-open-v3",
    "drawer-open-v3",
    "drawer-close-v3",
    "button-press-topdown-v3",
    "peg-insert-side-v3",
    "window-open-v3",
    "window-close-v3",
]


@pytest.fixture(scope="module")
def mt10():
    return load_suite("mt10", seed=0)


def _goal_sequence(env, seed, resets=4):
    """Goals and first observations over one seeded reset and then unseeded ones."""
    goals, observations = [], []
    for k in range(resets):
        obs, _ = env.reset(seed=seed) if k == 0 else env.reset()
        goals.append(np.array(env.unwrapped._target_pos, copy=True))
        observations.append(obs)
    return np.stack(goals), np.stack(observations)


def test_mt10_spaces_and_names(mt10):
    assert mt10.task_names == MT10_NAMES
    assert (mt10.num_tasks, mt10.obs_dim, mt10.act_dim) == (10, 49, 4)
    assert mt10.max_episode_steps == 500
    assert mt10.observation_space.shape == (49,)
    assert mt10.observation_space.dtype == np.float32
    assert mt10.action_space.shape == (4,)
    assert np.all(mt10.action_space.low == -1) and np.all(mt10.action_space.high == 1)


@pytest.mark.parametrize("task", [0, 4, 9])
def test_mt10_one_hot_and_observation(mt10, task):
    env = mt10.make_env(task)
    assert env.observation_space == mt10.observation_space
    assert env.action_space == mt10.action_space
    obs, _ = env.reset(seed=1)
    assert obs.dtype == np.float32 and obs.shape == (49,)
    np.testing.assert_array_equal(obs[39:], np.eye(10, dtype=np.float32)[task])
    assert env.unwrapped.__class__.__name__.lower().startswith("sawyer")
    obs, reward, terminated, truncated, _ = env.step(np.zeros(4, dtype=np.float32))
    np.testing.assert_array_equal(obs[39:], np.eye(10, dtype=np.float32)[task])
    assert obs.dtype == np.float32 and isinstance(reward, float)
    assert terminated is False and truncated is False


def test_mt10_success_in_info_and_v2_rewards(mt10):
    env = mt10.make_env(1)
    assert env.unwrapped.reward_function_version == "v2"
    _, info = env.reset(seed=0)
    assert "success" in info
    for _ in range(3):
        *_, info = env.step(env.action_space.sample())
        assert info["success"] in (0.0, 1.0, False, True)


def test_unknown_reward_version_rejected():
    with pytest.raises(MtrlError, match=r"suite.reward_version='v3': must be v2 or v1"):
        load_suite("mt1-reach", {"reward_version": "v3"})


def test_v1_reward_version_passed_through():
    env = load_suite("mt1-reach", {"reward_version": "v1"}).make_env(0)
    assert env.unwrapped.reward_function_version == "v1"


def test_seeded_goals_repeat_and_differ(mt10):
    factory = mt10.env_factory(1)
    goals_a, obs_a = _goal_sequence(factory(), seed=5)
    goals_b, obs_b = _goal_sequence(factory(), seed=5)
    np.testing.assert_array_equal(goals_a, goals_b)
    np.testing.assert_array_equal(obs_a, obs_b)
    assert len({tuple(g) for g in goals_a}) > 1, "a new goal should be drawn at each reset"
    goals_c, _ = _goal_sequence(factory(), seed=6)
    assert not np.array_equal(goals_a, goals_c)


def _rand_vecs(suite):
    return np.stack([pickle.loads(t.data)["rand_vec"] for t in suite.specs[0].raw.args["tasks"]])


def test_suite_seed_fixes_sampled_goals():
    first = _rand_vecs(load_suite("mt1-reach", seed=11))
    other = _rand_vecs(load_suite("mt1-reach", seed=12))
    # sample again for real, bypassing the per-process and the disk cache
    again = draw_goals("MT1", 11, "reach-v3")["reach-v3"]
    again = np.stack([pickle.loads(t.data)["rand_vec"] for t in again])
    assert first.shape == (50, 6)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


def test_mt10_goals_differ_between_tasks_of_a_suite(mt10):
    vecs = [pickle.loads(s.raw.args["tasks"][0].data)["rand_vec"] for s in mt10.specs[:2]]
    assert mt10.specs[0].raw.args["env_name"] == "reach-v3"
    assert len(mt10.specs[0].raw.args["tasks"]) == 50
    assert not np.array_equal(vecs[0][:3], vecs[1][:3])


def test_truncation_override():
    env = load_suite("mt1-reach", {"max_episode_steps": 3}).make_env(0)
    env.reset(seed=0)
    flags = [env.step(np.zeros(4, dtype=np.float32))[3] for _ in range(3)]
    assert flags == [False, False, True]


def test_unknown_task_name_has_close_match():
    with pytest.raises(MtrlError, match=r"reach-v3"):
        load_suite("mt10", {"tasks": ["reach-v2"]})


FIRST_OBS = (
    "import pickle, sys, numpy as np; factory = pickle.load(open(sys.argv[1], 'rb')); "
    "np.save(sys.argv[2], factory().reset(seed=3)[0])"
)


def test_factory_pickles_and_builds_in_a_fresh_interpreter(mt10, tmp_path):
    factory = mt10.env_factory(2)
    payload = pickle.dumps(factory)
    assert len(payload) < 100_000, "a factory should carry one task's goals, not the benchmark"
    expected = mt10.make_env(2).reset(seed=3)[0]
    np.testing.assert_array_equal(pickle.loads(payload)().reset(seed=3)[0], expected)
    (tmp_path / "factory.pkl").write_bytes(payload)
    args = [sys.executable, "-c", FIRST_OBS, str(tmp_path / "factory.pkl"), str(tmp_path / "o.npy")]
    subprocess.run(args, check=True, timeout=120)
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), expected)
