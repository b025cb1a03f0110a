"""SuiteVecEnv: a Stable-Baselines3 VecEnv over real suites (the cheap suite, Meta-World MT10)."""

from __future__ import annotations

import numpy as np
import pytest
from stable_baselines3 import SAC
from stable_baselines3.common.monitor import Monitor

from mtrl.baselines.sb3_vec_env import SuiteVecEnv
from mtrl.envs import TaskSuite, load_suite
from mtrl.envs.wrappers import TaskEnvWrapper
from mtrl.rollout import task_seed

EPISODE = 5


@pytest.fixture(scope="module")
def cheap() -> TaskSuite:
    return load_suite("cheap4", overrides={"max_episode_steps": EPISODE}, seed=0)


def test_shapes_one_hot_and_sb3_autoreset(cheap: TaskSuite) -> None:
    T = cheap.num_tasks
    rng = np.random.default_rng(0)
    actions = [rng.uniform(-1, 1, (T, cheap.act_dim)).astype(np.float32) for _ in range(EPISODE)]
    env = SuiteVecEnv(cheap, num_workers=0, seed=3)
    try:
        assert env.num_envs == T
        assert env.observation_space.shape == (cheap.obs_dim,)
        assert (env.action_space.low == -1).all() and (env.action_space.high == 1).all()
        obs = env.reset()
        assert obs.shape == (T, cheap.obs_dim) and obs.dtype == np.float32
        np.testing.assert_array_equal(obs[:, -T:], np.eye(T))  # one env per task, in order
        for a in actions:
            obs, rewards, dones, infos = env.step(a)
            assert rewards.shape == dones.shape == (T,) and len(infos) == T
            assert all(isinstance(info["success"], bool) for info in infos)
        assert dones.all()  # every episode ends at the time limit, at once
    finally:
        env.close()
    # the true last observation of each episode, from each task's env stepped by hand
    for i, info in enumerate(infos):
        single = cheap.make_env(i)
        single.reset(seed=task_seed(3, i))
        total = 0.0
        for a in actions:
            last, reward, *_ = single.step(a[i])
            total += reward
        np.testing.assert_array_equal(info["terminal_observation"], last)
        assert not np.array_equal(obs[i], last)  # the returned obs is the reset one
        assert info["TimeLimit.truncated"] is True
        assert info["is_success"] in (True, False)
        assert info["episode"]["l"] == EPISODE
        assert info["episode"]["r"] == pytest.approx(total, rel=1e-5)


def test_seed_reseeds_at_the_next_reset(cheap: TaskSuite) -> None:
    a, b = SuiteVecEnv(cheap, seed=0), SuiteVecEnv(cheap, seed=5)
    try:
        assert a.seed(5) == [task_seed(5, i) for i in range(cheap.num_tasks)]
        first = a.reset()
        np.testing.assert_array_equal(first, b.reset())
        assert not np.array_equal(a.reset(), first)  # later resets go on, not reseeded
    finally:
        a.close()
        b.close()


def test_attributes_and_methods_reach_envs_in_workers(cheap: TaskSuite) -> None:
    env = SuiteVecEnv(cheap, num_workers=2)
    try:
        env.reset()
        assert env.render_mode is None
        assert env.get_attr("max_episode_steps") == [EPISODE] * 4
        env.set_attr("max_episode_steps", 2, indices=[1])
        assert env.get_attr("max_episode_steps", indices=[0, 1]) == [EPISODE, 2]
        states = env.env_method("get_state", indices=3)
        assert len(states) == 1 and "xy" in states[0]["env"]
        assert env.env_is_wrapped(Monitor) == [False] * 4
        assert env.env_is_wrapped(TaskEnvWrapper, indices=2) == [True]
        assert not env.has_attr("no_such_attribute")
        with pytest.raises(AttributeError):
            env.get_attr("no_such_attribute")
        env.step(np.zeros((4, cheap.act_dim), np.float32))  # still usable after the error
    finally:
        env.close()
    assert env.rollout.closed


def test_sb3_sac_learns_through_it(cheap: TaskSuite) -> None:
    env = SuiteVecEnv(cheap)
    try:
        model = SAC(
            "MlpPolicy",
            env,
            learning_starts=40,
            batch_size=32,
            seed=1,
            policy_kwargs={"net_arch": [32]},
        )
        model.learn(300)
        assert model.num_timesteps == 300  # SB3 counts every env: 75 steps per task
        buffer = model.replay_buffer
        stored = buffer.pos
        assert stored == 300 // cheap.num_tasks
        # episodes end every 5 steps, at the time limit: not terminal for SAC's targets, and
        # the stored next observation is the episode's last one, not the reset one after it
        ends = np.arange(stored) % EPISODE == EPISODE - 1
        assert (buffer.dones[:stored].all(axis=1) == ends).all()
        assert (buffer.timeouts[:stored] == buffer.dones[:stored]).all()
        same = (buffer.next_observations[: stored - 1] == buffer.observations[1:stored]).all(-1)
        assert (same.all(axis=1) == ~ends[: stored - 1]).all()
        assert len(model.ep_info_buffer) == min(100, 300 // EPISODE)
    finally:
        env.close()


def test_two_steps_on_metaworld_mt10() -> None:
    mt10 = load_suite("mt10", seed=0)
    env = SuiteVecEnv(mt10, num_workers=0)
    try:
        assert env.num_envs == 10 and env.observation_space.shape == (49,)
        model = SAC(
            "MlpPolicy",
            env,
            learning_starts=10,
            batch_size=8,
            seed=0,
            policy_kwargs={"net_arch": [16]},
        )
        model.learn(20)  # two vector steps
        assert model.num_timesteps == 20
        obs = model.replay_buffer.observations[:2]
        np.testing.assert_array_equal(obs[0, :, -10:], np.eye(10))
    finally:
        env.close()
