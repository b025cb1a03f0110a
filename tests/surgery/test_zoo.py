"""What holds for every registered method: documented, T = 1, NaN named, blocks equal flat, and
one real MT-SAC update through each (fused and per-task paths)."""

from __future__ import annotations

import pytest
import torch
from batches import replay_batch

from mtrl.agents import MTSAC, AgentConfig, SurgeryConfig
from mtrl.surgery import (
    NonFiniteGradientError,
    TaskGradients,
    aggregator_class,
    get_aggregator,
    list_aggregators,
    option_specs,
)

METHODS = [n for n in list_aggregators() if aggregator_class(n).__module__.startswith("mtrl.")]
GRADIENT = [n for n in METHODS if aggregator_class(n).kind == "gradient"]
ZOO = {
    "mgda", "imtl-g", "nash-mtl", "gradvac", "graddrop", "aligned-mtl", "upgrad", "dualproj",
    "config", "fairgrad", "sdmgrad", "moco", "rlw", "famo", "uw", "dwa", "gradnorm",
}  # fmt: skip


def test_the_zoo_is_registered():
    assert ZOO | {"mean", "sum", "pcgrad", "cagrad"} <= set(METHODS)
    assert {n for n in METHODS if aggregator_class(n).kind == "loss"} == {
        "famo",
        "uw",
        "dwa",
        "gradnorm",
    }


@pytest.mark.parametrize("name", METHODS)
def test_documented(name):
    cls = aggregator_class(name)
    assert cls.description and "\n" not in cls.description
    assert cls.paper or name == "sum"
    assert cls.__doc__ and cls.kind in ("gradient", "loss")
    for spec in option_specs(name).values():
        assert spec.doc, f"{name}.{spec.name} has no :param: line"


@pytest.mark.parametrize("name", GRADIENT)
def test_one_task_nan_and_blocks(name):
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(1, 12, generator=gen, dtype=torch.float64)
    assert torch.equal(get_aggregator(name, seed=0)(g), g[0])
    G = torch.randn(5, 12, generator=gen, dtype=torch.float64)
    flat = get_aggregator(name, seed=1)(G)
    blocks = get_aggregator(name, seed=1)(TaskGradients([G[:, :4], G[:, 4:].reshape(5, 2, 4)]))
    torch.testing.assert_close(torch.cat([blocks[0], blocks[1].flatten()]), flat)
    assert torch.isfinite(flat).all()
    G[2, 3] = float("nan")
    with pytest.raises(NonFiniteGradientError):
        get_aggregator(name, seed=0)(G)


@pytest.mark.parametrize("name", METHODS)
def test_an_mt_sac_update_through_every_method(name):
    T, B, OBS, ACT = 4, 8, 6 + 4, 2
    batch = replay_batch(T, B, OBS, ACT, seed=1)
    torch.manual_seed(0)
    agent = MTSAC(OBS, ACT, T, AgentConfig(hidden=[16, 16]), SurgeryConfig(name=name), seed=0)
    before = [p.detach().clone() for p in agent.critic.parameters()]
    for diagnostics in (False, True, False):
        metrics = agent.update(batch, diagnostics=diagnostics)
        assert torch.isfinite(metrics["critic_loss"]).all()
    moved = [not torch.equal(a, b) for a, b in zip(before, agent.critic.parameters(), strict=True)]
    assert any(moved)
    for p in [*agent.critic.parameters(), *agent.actor.parameters()]:
        assert torch.isfinite(p).all()


def test_the_readme_lists_every_method():
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in METHODS:
        assert f"| `{name}` |" in readme, name
