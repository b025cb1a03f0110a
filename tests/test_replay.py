"""The multi-task replay buffer: task axis, ring overwrite, equal samples per task, state."""

import numpy as np
import pytest
import torch

from mtrl.replay import MultiTaskReplay

T, OBS, ACT = 3, 5, 2


def fill(buffer: MultiTaskReplay, steps: int, start: int = 0) -> None:
    for i in range(start, start + steps):
        obs = np.stack([np.full(OBS, 100 * t + i) for t in range(T)])
        buffer.add(obs, np.full((T, ACT), i), np.arange(T) + i, obs + 0.5, np.zeros(T), np.ones(T))


def test_sample_has_task_axis_and_keeps_tasks_apart():
    buffer = MultiTaskReplay(T, 10, OBS, ACT, seed=0)
    fill(buffer, 6)
    batch = buffer.sample(8)
    assert batch["obs"].shape == (T, 8, OBS) and batch["action"].shape == (T, 8, ACT)
    assert batch["reward"].shape == (T, 8) and batch["terminated"].shape == (T, 8)
    for t in range(T):
        step = batch["obs"][t, :, 0] - 100 * t  # which insert each sample came from
        assert ((step >= 0) & (step < 6)).all()
        torch.testing.assert_close(batch["reward"][t], step + t)
        torch.testing.assert_close(batch["next_obs"][t], batch["obs"][t] + 0.5)
    assert (batch["truncated"] == 1).all() and (batch["terminated"] == 0).all()


def test_ring_overwrites_the_oldest():
    buffer = MultiTaskReplay(T, 4, OBS, ACT)
    fill(buffer, 7)
    assert len(buffer) == 4
    steps = set(buffer.sample(200)["obs"][0, :, 0].tolist())
    assert steps == {3.0, 4.0, 5.0, 6.0}


def test_sampling_is_seeded_and_state_roundtrips():
    a, b = MultiTaskReplay(T, 20, OBS, ACT, seed=1), MultiTaskReplay(T, 20, OBS, ACT, seed=1)
    fill(a, 15)
    fill(b, 15)
    assert torch.equal(a.sample(5)["obs"], b.sample(5)["obs"])
    c = MultiTaskReplay(T, 20, OBS, ACT, seed=99)
    c.load_state_dict(a.state_dict())
    assert torch.equal(a.sample(5)["obs"], c.sample(5)["obs"])
    fill(a, 3, start=15)
    fill(c, 3, start=15)
    assert torch.equal(a.sample(5)["obs"], c.sample(5)["obs"])


def test_empty_and_mismatched_state_are_errors():
    buffer = MultiTaskReplay(T, 4, OBS, ACT)
    with pytest.raises(RuntimeError, match="empty"):
        buffer.sample(2)
    fill(buffer, 2)
    other = MultiTaskReplay(T, 4, OBS + 1, ACT)
    with pytest.raises(ValueError, match="'obs' has shape"):
        other.load_state_dict(buffer.state_dict())
