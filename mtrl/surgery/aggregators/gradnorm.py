"""GradNorm (Chen et al., 2018, "GradNorm: Gradient Normalization for Adaptive Loss Balancing in
Deep Multitask Networks"), Algorithm 1, on the last shared layer."""

from __future__ import annotations

from typing import Annotated, Any

import torch
from annotated_types import Ge, Gt
from torch import Tensor

from mtrl.configtypes import Float
from mtrl.surgery.aggregators.base import LossWeighting
from mtrl.surgery.aggregators.loss_tools import LearnedTaskVector, check_finite_losses
from mtrl.surgery.aggregators.registry import register_aggregator

EPS = 1e-8


@register_aggregator("gradnorm")
class GradNorm(LossWeighting):
    """Learn task weights that give each task a gradient norm set by its relative training rate.

    With G_t the norm of task t's weighted gradient ``w_t ∇L_t`` of the last shared layer (the
    trainer's ``shared_grad_norms``; ‖∇L_t‖ = G_t / w_t), Ḡ their mean and
    ``r_t = L̃_t / mean(L̃)``, ``L̃_t = L_t / L_t(0)`` (L(0): the first update's losses), the
    weights take one Adam step on ``Σ_t |G_t - Ḡ r_t^α|`` (the target held constant), are kept
    at 1e-8 or more (a negative weight would ascend its task's loss) and renormalised to sum to
    T. They start at 1; T = 1 gives 1; identical losses and gradient norms keep them equal.

    The loss ratios need positive losses. If this update's losses or L(0) are not all positive
    (the SAC actor's on Meta-World are negative), every r_t is 1: the weights equalise the
    tasks' gradient norms (GradNorm at α = 0), the paper's training rates being undefined for
    losses without a lower bound. The MTRL code (facebookresearch/mtrl) divides signed losses
    by the previous update's (not the first), with α = 1, Adam at lr 1e-6 and a renormalisation
    without effect.

    :param alpha: strength of the pull towards a common training rate (1.5 in the paper; 0
        equalises the gradient norms).
    :param lr: learning rate of the weights (Adam). The weights, of order 1, move by about lr
        per update, so the default 1e-3 rebalances them over ~1000 updates without following
        the batch noise of the gradient norms (the MTRL code uses 1e-6, LibMTL the network's lr).
    """

    description = "learned weights that balance the tasks' gradient norms by training rate"
    paper = "Chen et al. 2018"
    stateful = True
    needs = frozenset({"shared_grad_norms"})

    def __init__(
        self,
        alpha: Annotated[Float, Ge(0)] = 1.5,
        lr: Annotated[Float, Gt(0)] = 1e-3,
    ) -> None:
        self.alpha, self.lr = float(alpha), float(lr)
        self.task_weights = LearnedTaskVector("gradnorm", 1.0, self.lr)
        self.initial_losses: Tensor | None = None

    def weights(self, losses: Tensor) -> Tensor:
        if losses.numel() == 1:
            weights = torch.ones_like(losses)
        else:  # a copy: observe updates the learned weights in place
            weights = self.task_weights.get(losses).detach().clone()
        self.last_weights = weights
        return weights

    def observe(
        self,
        losses: Tensor,
        losses_after: Tensor | None = None,
        shared_grad_norms: Tensor | None = None,
    ) -> None:
        if shared_grad_norms is None:
            raise ValueError("gradnorm needs shared_grad_norms (per-task weighted gradient norms)")
        tasks = losses.numel()
        if tasks == 1:
            return
        norms = shared_grad_norms.detach().to(losses)
        check_finite_losses(self.task_names, losses=losses, shared_grad_norms=norms)
        if self.initial_losses is None:
            self.initial_losses = losses.detach().clone()
        initial = self.initial_losses.to(losses)
        w = self.task_weights.get(losses)
        raw = norms / w.detach()  # ‖∇L_t‖: the weights of this update are the current ones
        ratio = losses / initial
        positive = (losses > 0).all() & (initial > 0).all()
        rate = torch.where(positive, ratio / ratio.mean(), torch.ones_like(ratio))
        target = norms.mean() * rate**self.alpha
        self.task_weights.step(torch.sign(norms - target) * raw)  # d/dw_t |w_t ‖∇L_t‖ - target_t|
        with torch.no_grad():
            w.clamp_(min=EPS)
            w.mul_(tasks / w.sum())

    def state_dict(self) -> dict[str, Any]:
        initial = None if self.initial_losses is None else self.initial_losses.clone()
        return {"task_weights": self.task_weights.state_dict(), "initial_losses": initial}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.task_weights.load_state_dict(state["task_weights"])
        self.initial_losses = state["initial_losses"]

    def options(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "lr": self.lr}
