"""The built-in point-mass suite: determinism, solvability, conflict, truncation."""

from __future__ import annotations

import pickle

import gymnasium as gym
import numpy as np
import pytest
import torch

from mtrl.agents import MTSAC, AgentConfig
from mtrl.envs import load_suite
from mtrl.envs.pointmass import ENV_ID, task_params
from mtrl.errors import MtrlError
from mtrl.replay import MultiTaskReplay
from mtrl.rollout import Rollout


def _rollout(env, seed, actions):
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for action in actions:
        obs, reward, *_ = env.step(action)
        out.append(np.append(obs, reward))
    return out


def _controller(obs, params, step_size=0.1, respect_inversion=True):
    """Steer straight at the (known) goal, flipping the action on inverted tasks."""
    rad = np.radians(params["goal_angle"])
    goal = 0.7 * np.array([np.cos(rad), np.sin(rad)])
    action = np.clip((goal - obs[:2]) / step_size, -1.0, 1.0)
    return -action if params["inverted"] and respect_inversion else action


def test_cheap4_layout():
    suite = load_suite("cheap4")
    assert suite.task_names == ["goal000", "goal090-inv", "goal180", "goal270-inv"]
    assert (suite.obs_dim, suite.act_dim, suite.max_episode_steps) == (6, 2, 50)
    obs, _ = suite.make_env(2).reset(seed=0)
    np.testing.assert_array_equal(obs[2:], [0, 0, 1, 0])
    assert np.all(np.abs(obs[:2]) <= 0.1)


def test_deterministic_given_seed():
    suite = load_suite("cheap4")
    actions = np.random.default_rng(0).uniform(-1, 1, size=(20, 2)).astype(np.float32)
    a = _rollout(suite.make_env(1), 3, actions)
    b = _rollout(pickle.loads(pickle.dumps(suite.env_factory(1)))(), 3, actions)
    c = _rollout(suite.make_env(1), 4, actions)
    np.testing.assert_array_equal(np.concatenate(a), np.concatenate(b))
    assert not np.array_equal(np.concatenate(a), np.concatenate(c))
    unseeded = [suite.make_env(1).reset()[0] for _ in range(2)]
    np.testing.assert_array_equal(*unseeded)


@pytest.mark.parametrize("respect_inversion", [True, False])
def test_controller_succeeds_only_if_it_knows_the_task(respect_inversion):
    suite = load_suite("cheap16")
    successes = []
    for task in range(suite.num_tasks):
        params = task_params(task, suite.num_tasks)
        env = suite.make_env(task)
        obs, _ = env.reset(seed=task)
        reached = False
        for _ in range(suite.max_episode_steps):
            obs, reward, terminated, _, info = env.step(
                _controller(obs, params, respect_inversion=respect_inversion)
            )
            reached = reached or bool(info["success"])
            assert reward <= 0.0 and terminated is False
        successes.append(reached)
    if respect_inversion:
        assert all(successes)
    else:  # a policy ignoring the task id fails every inverted task: the tasks conflict
        assert successes == [task % 2 == 0 for task in range(suite.num_tasks)]


def test_truncation_at_max_steps():
    env = load_suite("cheap4").make_env(0)
    env.reset(seed=0)
    flags = [env.step(np.zeros(2, dtype=np.float32))[2:4] for _ in range(50)]
    assert flags[:-1] == [(False, False)] * 49 and flags[-1] == (False, True)
    env.reset()
    assert env.step(np.zeros(2, dtype=np.float32))[3] is False


def test_registered_with_gymnasium():
    env = gym.make(ENV_ID, goal_angle=90.0)
    env.reset(seed=0)
    assert env.spec.max_episode_steps == 50
    np.testing.assert_allclose(env.unwrapped.goal, (0.0, 0.7), atol=1e-12)


def test_reward_scale_multiplies_the_reward():
    from mtrl.envs.pointmass import PointMassEnv

    plain, scaled = PointMassEnv(goal_angle=90.0), PointMassEnv(goal_angle=90.0, reward_scale=0.1)
    plain.reset(seed=4)
    scaled.reset(seed=4)
    r_plain = plain.step([0.5, -0.2])[1]
    r_scaled = scaled.step([0.5, -0.2])[1]
    assert r_plain < 0 and abs(r_scaled - 0.1 * r_plain) < 1e-12


def test_reward_scales_name_and_scale_the_tasks():
    plain, scaled = load_suite("cheap16"), load_suite("cheap16-scaled")
    assert scaled.task_names[:3] == ["goal000-x30", "goal022.5-inv-x30", "goal045"]
    assert scaled.task_names[2:] == plain.task_names[2:]
    action = np.array([0.3, -0.2], dtype=np.float32)
    for task, factor in [(0, 30.0), (1, 30.0), (2, 1.0), (15, 1.0)]:
        a, b = plain.make_env(task), scaled.make_env(task)
        a.reset(seed=1), b.reset(seed=1)
        assert b.step(action)[1] == pytest.approx(factor * a.step(action)[1])


@pytest.mark.parametrize("scales", [[1.0] * 5, [2.0, -1.0]])
def test_bad_reward_scales_are_rejected(scales):
    with pytest.raises(MtrlError, match="reward_scales"):
        load_suite("cheap4", {"reward_scales": scales})


def _critic_grad_norms(suite_name: str) -> np.ndarray:
    """Per-task critic gradient norms of a fresh MT-SAC on random transitions of a suite."""
    suite = load_suite(suite_name)
    replay = MultiTaskReplay(suite.num_tasks, 200, suite.obs_dim, suite.act_dim, "cpu", seed=0)
    rng = np.random.default_rng(0)
    with Rollout(suite, num_workers=0, seed=0) as rollout:
        obs = rollout.reset()
        for _ in range(100):
            actions = rng.uniform(-1, 1, (suite.num_tasks, suite.act_dim)).astype(np.float32)
            r = rollout.step(actions)
            replay.add(obs, actions, r.reward, r.next_obs, r.terminated, r.truncated)
            obs = r.obs
    torch.manual_seed(0)
    agent = MTSAC(suite.obs_dim, suite.act_dim, suite.num_tasks, AgentConfig(hidden=[64, 64]))
    metrics = agent.update(replay.sample(64), diagnostics=True)
    return metrics["diagnostics"]["critic"].task_norms.numpy()


def test_scaled_tasks_dominate_the_shared_critic_gradient():
    """The mechanism the scaled suite relies on: two loud tasks outweigh fourteen quiet ones."""
    scaled, plain = _critic_grad_norms("cheap16-scaled"), _critic_grad_norms("cheap16")
    assert np.median(scaled[:2]) > 10 * np.median(scaled[2:])
    assert np.median(scaled[:2]) > np.sum(scaled[2:]) / 2
    assert np.median(plain[:2]) < 3 * np.median(plain[2:])
