"""Checkpoints are atomic: a failed write leaves the previous file intact and no debris."""

import pytest
import torch

from mtrl.checkpoint import load_checkpoint, save_checkpoint
from mtrl.errors import MtrlError


def test_roundtrip_with_weights_only(tmp_path):
    path = save_checkpoint(
        {"w": torch.ones(3), "step": 5, "rng": {"state": [1, 2]}}, tmp_path / "c.pt"
    )
    state = load_checkpoint(path)
    assert state["step"] == 5 and torch.equal(state["w"], torch.ones(3))


def test_failed_write_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"step": 1}, path)
    with pytest.raises(Exception):  # noqa: B017 - whatever torch.save raises for a lambda
        save_checkpoint({"step": 2, "bad": lambda: None}, path)
    assert load_checkpoint(path)["step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_unreadable_checkpoint_is_a_one_line_error(tmp_path):
    path = tmp_path / "c.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(MtrlError, match=r"c\.pt is corrupt or truncated"):
        load_checkpoint(path)
    with pytest.raises(MtrlError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")
