"""Sharded rollout workers: T task envs stepped by N processes through shared memory.

from mtrl.envs import load_suite
from mtrl.rollout import Rollout

suite = load_suite("mt10", seed=0)
with Rollout(suite, num_workers=2, seed=0) as rollout:
    obs = rollout.reset()                      # [T, obs_dim] float32
    result = rollout.step(actions)             # actions [T, act_dim] in [-1, 1]
    replay.add(obs, actions, result.reward, result.next_obs, result.terminated)
    obs = result.obs                           # reset obs where an episode ended
    for episode in result.episodes: ...        # return, length, success per task
"""

from mtrl.rollout.rollout import (
    EpisodeStats,
    NonFiniteEnvError,
    Rollout,
    RolloutError,
    StepResult,
    task_seed,
)
from mtrl.rollout.sharding import estimated_costs, shard_bounds

__all__ = [
    "EpisodeStats",
    "NonFiniteEnvError",
    "Rollout",
    "RolloutError",
    "StepResult",
    "estimated_costs",
    "shard_bounds",
    "task_seed",
]
