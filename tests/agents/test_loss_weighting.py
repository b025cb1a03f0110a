"""MT-SAC with a loss-balancing method: weights on the losses, one fused backward, and what the
method observes after the step (the losses after it, the shared layer's per-task gradient norms)
checked against per-task gradients computed independently."""

from __future__ import annotations

import copy

import pytest
import torch
from batches import replay_batch
from torch import Tensor

from mtrl.agents import MTSAC, AgentConfig, SurgeryConfig
from mtrl.surgery import LossWeighting, per_task_grads, register_aggregator

T, B, OBS, ACT = 10, 32, 39 + 10, 4
WEIGHTS = torch.linspace(0.5, 1.5, T)


@register_aggregator("test-loss-recorder")
class Recorder(LossWeighting):
    """Fixed unequal weights; records what the trainer hands it."""

    description = "records the losses, losses after the step and shared-layer norms (tests)"
    needs = frozenset({"losses_after", "shared_grad_norms"})

    def __init__(self, uniform: bool = False) -> None:
        self.uniform = uniform
        self.seen: list[dict[str, Tensor | None]] = []

    def weights(self, losses: Tensor) -> Tensor:
        self.last_weights = torch.ones(T) if self.uniform else WEIGHTS
        return self.last_weights

    def observe(self, losses, losses_after=None, shared_grad_norms=None) -> None:
        self.seen.append({"losses": losses, "after": losses_after, "norms": shared_grad_norms})


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    return replay_batch(T, B, OBS, ACT, seed)


def agent(
    name: str, networks: str = "both", multihead: bool = False, hidden: int = 32, **options
) -> MTSAC:
    torch.manual_seed(0)
    surgery = SurgeryConfig(name=name, networks=networks, options=options)
    cfg = AgentConfig(hidden=[hidden, hidden], multihead=multihead)
    return MTSAC(OBS, ACT, T, cfg, surgery)


@pytest.mark.parametrize(
    ("multihead", "hidden", "shared"),
    [(False, 32, "head"), (True, 96, "trunk.1")],  # 96 x 96 is wide: the Gram-matrix path
    ids=["single-head", "multi-head"],
)
def test_the_method_sees_the_losses_after_the_step_and_the_shared_layer_norms(
    multihead, hidden, shared
):
    a = agent("test-loss-recorder", networks="critic", multihead=multihead, hidden=hidden)
    data = batch()
    before = {k: v.detach().clone() for k, v in a.critic.named_parameters()}
    torch.manual_seed(3)
    target = a.critic_targets(data)
    tb = {"obs": data["obs"], "action": data["action"], "target": target}
    torch.manual_seed(3)  # the update draws the same next actions for its target
    a.update(data)
    (seen,) = a.aggregators["critic"].seen

    def task_loss(params, task_batch):
        return a._critic_losses(params, {k: v[None] for k, v in task_batch.items()})[0]

    G, losses = per_task_grads(task_loss, before, tb, return_losses=True, flat=False)
    torch.testing.assert_close(seen["losses"], losses)
    names = list(before)
    layer = [i for i, n in enumerate(names) if n.startswith(f"net.{shared}.")]
    assert len(layer) == 2  # its weight and bias
    per_task = torch.sqrt(sum(G.blocks[i].flatten(1).pow(2).sum(1) for i in layer))
    torch.testing.assert_close(seen["norms"], WEIGHTS * per_task, rtol=1e-4, atol=1e-6)
    after = a._critic_losses(dict(a.critic.named_parameters()), tb).detach()
    torch.testing.assert_close(seen["after"], after)
    assert not torch.allclose(seen["after"], seen["losses"])  # the step changed them


def test_uniform_weights_update_like_sum():
    """The loss-weighted path with weights 1 gives the same parameters as the `sum` aggregator."""
    a, b = agent("test-loss-recorder", uniform=True), agent("sum")
    data = batch(1)
    for _ in range(2):
        torch.manual_seed(5)
        a.update(data)
        torch.manual_seed(5)
        b.update(data)
    for (name, p), q in zip(a.actor.named_parameters(), b.actor.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)
    for p, q in zip(a.critic.parameters(), b.critic.parameters(), strict=True):
        torch.testing.assert_close(p, q)
    torch.testing.assert_close(a.log_alpha, b.log_alpha)


def test_diagnostics_with_a_loss_method():
    a = agent("test-loss-recorder")
    metrics = a.update(batch(2), diagnostics=True)
    diag = metrics["diagnostics"]
    assert set(diag) == {"critic", "actor"}
    assert diag["critic"].cosine.shape == (T, T)
    copy.deepcopy(a)  # the agent (and its method) stay copyable for checkpoints
