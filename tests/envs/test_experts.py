"""Meta-World's scripted policies through the suite interface (one-hot rows, [-1, 1] actions)."""

import numpy as np
import pytest

from mtrl.envs import load_suite
from mtrl.envs.experts import MetaWorldExperts
from mtrl.errors import MtrlError
from mtrl.evaluation import evaluate


def test_the_scripted_policies_solve_every_mt10_task():
    suite = load_suite("mt10", {"max_episode_steps": 200}, seed=0)
    result = evaluate(MetaWorldExperts(suite), suite, episodes=2, seed=1, envs_per_task=2)
    np.testing.assert_array_equal(result.success, np.ones(suite.num_tasks))


def test_rows_are_read_by_their_one_hot_id():
    suite = load_suite("mt10", seed=0)
    experts = MetaWorldExperts(suite)
    obs = np.stack([suite.make_env(t).reset(seed=t)[0] for t in range(suite.num_tasks)])
    order = np.random.default_rng(0).permutation(suite.num_tasks)
    np.testing.assert_array_equal(experts(obs[order]), experts(obs)[order])
    assert experts(obs[:0]).shape == (0, suite.act_dim)  # no env left running


def test_tasks_without_a_scripted_policy_are_refused():
    with pytest.raises(MtrlError, match="no scripted Meta-World policy"):
        MetaWorldExperts(load_suite("cheap4", seed=0))
