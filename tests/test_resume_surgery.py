"""Every stateful aggregator saves and restores its state in checkpoints: a run resumed from a
checkpoint ends with the same parameters as an uninterrupted one (CPU)."""

from pathlib import Path

import pytest
import torch

from mtrl.cli import main
from mtrl.surgery import aggregator_class, list_aggregators

STATEFUL = [name for name in list_aggregators() if aggregator_class(name).stateful]
ARGS = [
    "quickstart",
    "warmup=10",
    "eval.every=0",
    "eval.episodes=1",
    "logger.every=10",
    "checkpoint.every=20",
    "agent.hidden=[16, 16]",
    "agent.batch_size=8",
    "logger.progress=false",
    "torch_threads=1",
]


def agent_state(out: Path) -> dict:
    (run,) = out.iterdir()
    return torch.load(run / "checkpoint.pt", weights_only=True)["agent"]


def test_every_stateful_method_is_listed():
    assert {"pcgrad"} <= set(STATEFUL)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        *((name, []) for name in STATEFUL),
        # their state kept on the device path's device
        *((name, ["surgery.solver=device"]) for name in ("sdmgrad", "gradvac", "moco")),
    ],
    ids=[*STATEFUL, "sdmgrad-device", "gradvac-device", "moco-device"],
)
def test_resume_equals_an_uninterrupted_run(name, options, tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    method = [f"surgery={name}", *options]
    assert main(["train", *ARGS, *method, "steps=40", f"out={straight}"]) == 0
    assert main(["train", *ARGS, *method, "steps=20", f"out={split}"]) == 0
    (run,) = split.iterdir()
    assert main(["train", f"resume={run}", "steps=40"]) == 0
    a, b = agent_state(straight), agent_state(split)
    for net in ("actor", "critic"):
        for key, value in a[net].items():
            assert torch.equal(value, b[net][key]), f"{name}: {net}.{key}"
    assert torch.equal(a["log_alpha"], b["log_alpha"])
