"""Uncertainty weighting (Kendall et al., 2018, "Multi-Task Learning Using Uncertainty to Weigh
Losses for Scene Geometry and Semantics"), as in the MTRL code of the FAMO repository
(Cranial-XIX/FAMO, ``mtrl_files/uw.py``)."""

from __future__ import annotations

from typing import Annotated, Any

import torch
from annotated_types import Gt
from torch import Tensor

from mtrl.configtypes import Float
from mtrl.surgery.aggregators.base import LossWeighting
from mtrl.surgery.aggregators.loss_tools import LearnedTaskVector, check_finite_losses
from mtrl.surgery.aggregators.registry import register_aggregator


@register_aggregator("uw")
class UW(LossWeighting):
    """Weight each loss by a learned inverse variance: ``Σ_t ½ (exp(-s_t) L_t + s_t)``.

    The log-variances s start at 0 (the MTRL code; LibMTL: -0.5) and the weights are
    ``½ exp(-s_t)``, with the ½ of the paper and both codes (they sum to T/2 at the start).
    After the network's step s takes one Adam step on the same objective with this update's
    losses, as the MTRL code does (it steps s and the network on one backward).

    For a negative loss (the SAC actor's on Meta-World) s steps on ``|L_t|``: the objective's
    minimum is then ``s = log |L_t|``, a weight inverse to the loss's scale as for a positive
    loss. The MTRL code uses the signed loss, whose objective has no minimum in s when L < 0:
    s falls by about lr every update and the weights pass 1e19 within ~5000 updates at lr 0.01.
    Identical losses give equal weights; T = 1 gives 1 and learns nothing.

    :param lr: learning rate of the log-variances (Adam; 0.01 in the MTRL config).
    """

    description = "learned per-task uncertainty: each loss weighted by its inverse variance"
    paper = "Kendall et al. 2018"
    stateful = True

    def __init__(self, lr: Annotated[Float, Gt(0)] = 0.01) -> None:
        self.lr = float(lr)
        self.log_vars = LearnedTaskVector("uw", 0.0, self.lr)

    def weights(self, losses: Tensor) -> Tensor:
        if losses.numel() == 1:
            weights = torch.ones_like(losses)
        else:
            weights = 0.5 * torch.exp(-self.log_vars.get(losses).detach())
        self.last_weights = weights
        return weights

    def observe(
        self,
        losses: Tensor,
        losses_after: Tensor | None = None,
        shared_grad_norms: Tensor | None = None,
    ) -> None:
        if losses.numel() == 1:
            return
        check_finite_losses(self.task_names, losses=losses)
        s = self.log_vars.get(losses).detach()
        self.log_vars.step(0.5 * (1.0 - torch.exp(-s) * losses.abs()))  # d/ds ½(e^-s |L| + s)

    def state_dict(self) -> dict[str, Any]:
        return {"log_vars": self.log_vars.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.log_vars.load_state_dict(state["log_vars"])

    def options(self) -> dict[str, Any]:
        return {"lr": self.lr}
