"""FAMO (Liu et al., 2023, "FAMO: Fast Adaptive Multitask Optimization"), as in the official
MTRL code (Cranial-XIX/FAMO, ``mtrl_files/famo.py``)."""

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
"""Added to every loss before its log, as the official code does (its ``min_losses`` are 0)."""


@register_aggregator("famo")
class FAMO(LossWeighting):
    """Weight the losses so that every task's log-loss decreases at the same rate.

    Task logits ξ give z = softmax(ξ) and the weights ``w_t = (z_t / L_t) / Σ_s (z_s / L_s)``,
    the gradient of ``Σ z_t log L_t`` normalised as in the paper (they sum to 1, like ``mean``;
    the MTRL file multiplies by ``Σ z/L`` instead of dividing, which only rescales the step).
    After the network's step, ξ takes one Adam step (weight decay γ) along the softmax's Jacobian
    times ``log L_t - log L'_t``, L' the losses on the same batch after the step (one more
    forward, as in the official code); the losses get 1e-8 added, their lower bounds being 0.

    FAMO needs positive losses. The official MTRL code applies it to the critic only and trains
    the actor, whose SAC loss ``α log π - Q`` is negative wherever Q is large (on Meta-World
    throughout), on the plain mean; ``surgery.networks: critic`` reproduces that. Here, an
    update with a loss at or below -1e-8 gets the mean's weights 1/T and the instance keeps the
    mean from then on, so the actor of ``networks: both`` trains as in the official code once
    one of its losses has been negative. Identical losses and logits give 1/T; T = 1 gives 1.

    :param w_lr: learning rate of the task logits (Adam; 0.025 in the paper's MT10 runs).
    :param gamma: weight decay of the task logits (Adam's L2 term; 0.01 in the MT10 runs).
    """

    description = "task logits that make every task's log-loss fall at the same rate"
    paper = "Liu et al. 2023"
    stateful = True

    def __init__(
        self,
        w_lr: Annotated[Float, Gt(0)] = 0.025,
        gamma: Annotated[Float, Ge(0)] = 0.01,
    ) -> None:
        self.w_lr, self.gamma = float(w_lr), float(gamma)
        self.logits = LearnedTaskVector("famo", 0.0, self.w_lr, self.gamma)
        self.mean_only = False

    @property
    def needs(self) -> frozenset[str]:  # type: ignore[override]
        """The losses after the step, until the instance keeps the mean (then no extra forward)."""
        return frozenset() if self.mean_only else frozenset({"losses_after"})

    def weights(self, losses: Tensor) -> Tensor:
        tasks = losses.numel()
        uniform = torch.full_like(losses, 1.0 / tasks)
        if self.mean_only or tasks == 1:
            self.last_weights = uniform
            return uniform
        z = torch.softmax(self.logits.get(losses).detach(), dim=0)
        d = losses + EPS
        famo = z / d
        famo = famo / famo.sum()
        # A non-positive loss (possible until observe has seen one) gets the mean.
        weights = torch.where((d > 0).all(), famo, uniform)
        self.last_weights = weights
        return weights

    def observe(
        self,
        losses: Tensor,
        losses_after: Tensor | None = None,
        shared_grad_norms: Tensor | None = None,
    ) -> None:
        if self.mean_only or losses.numel() == 1:
            return
        if losses_after is None:
            raise ValueError("famo needs losses_after (the losses after the step, same batch)")
        check_finite_losses(self.task_names, losses=losses, losses_after=losses_after)
        before, after = losses + EPS, losses_after + EPS
        if not bool(((before > 0) & (after > 0)).all()):
            self.mean_only = True
            return
        z = torch.softmax(self.logits.get(losses).detach(), dim=0)
        delta = before.log() - after.log()
        self.logits.step(z * (delta - (z * delta).sum()))  # softmax Jacobian (diag z - z zᵀ) delta

    def state_dict(self) -> dict[str, Any]:
        return {"logits": self.logits.state_dict(), "mean_only": self.mean_only}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.logits.load_state_dict(state["logits"])
        self.mean_only = bool(state["mean_only"])

    def options(self) -> dict[str, Any]:
        return {"w_lr": self.w_lr, "gamma": self.gamma}
