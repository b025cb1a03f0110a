"""A random replay batch with a task axis, as MT-SAC's update takes it (imported by name:
conftest.py puts the tests folder on sys.path)."""

import torch


def replay_batch(tasks: int, batch: int, obs_dim: int, act_dim: int, seed: int = 0):
    """obs/next_obs [T, B, obs_dim] ending in the one-hot task id, actions in [-1, 1], random
    rewards, no terminations."""
    gen = torch.Generator().manual_seed(seed)
    eye = torch.eye(tasks)[:, None, :].expand(tasks, batch, tasks)
    features = obs_dim - tasks
    return {
        "obs": torch.cat([torch.randn(tasks, batch, features, generator=gen), eye], dim=-1),
        "action": torch.rand(tasks, batch, act_dim, generator=gen) * 2 - 1,
        "reward": torch.randn(tasks, batch, generator=gen),
        "next_obs": torch.cat([torch.randn(tasks, batch, features, generator=gen), eye], dim=-1),
        "terminated": torch.zeros(tasks, batch),
        "truncated": torch.zeros(tasks, batch),
    }
