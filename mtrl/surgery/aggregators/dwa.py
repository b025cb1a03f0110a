"""DWA (Liu et al., 2019, "End-to-End Multi-Task Learning with Attention"), as in LibMTL and the
official code (lorenmt/mtan), with windows of updates in place of epochs."""

from __future__ import annotations

from typing import Annotated, Any

import torch
from annotated_types import Ge, Gt
from torch import Tensor

from mtrl.configtypes import Float, Int
from mtrl.surgery.aggregators.base import LossWeighting
from mtrl.surgery.aggregators.loss_tools import check_finite_losses
from mtrl.surgery.aggregators.registry import register_aggregator

EPS = 1e-8


@register_aggregator("dwa")
class DWA(LossWeighting):
    """Weight each task by how slowly its loss fell: ``w = T softmax(r / temperature)``.

    r_t compares task t's mean loss over the last complete window of updates, a, with its mean
    over the window before, b: ``r_t = a / b`` (the paper's epochs become windows; RL has
    none). The weights sum to T, as in the paper; they are 1 each until two windows are
    complete, and for identical losses. T = 1 gives 1.

    For a negative mean loss (the SAC actor's on Meta-World) a / b reverses the meaning (a loss
    growing more negative would weigh more); there is no MTRL code of DWA, so r_t is the relative
    change ``1 + (a - b) / |b|`` (|b| at least 1e-8), which is a / b for b > 0 and keeps its
    sense for b < 0: a loss that fell by 10% of its magnitude has r = 0.9 whatever its sign.

    :param window: updates per window (the paper's epoch). The default 1000 averages out the
        batch noise of the per-task losses (a window's mean has ~30x less) yet follows the
        drifting SAC losses: it spans about five time constants of the target network (1/tau
        = 200 updates) and gives ~1000 re-weightings in a million updates.
    :param temperature: softmax temperature (2 in the paper); larger is closer to uniform.
    """

    description = "weights from the ratio of each task's recent to earlier mean loss"
    paper = "Liu et al. 2019"
    stateful = True

    def __init__(
        self,
        window: Annotated[Int, Ge(1)] = 1000,
        temperature: Annotated[Float, Gt(0)] = 2.0,
    ) -> None:
        self.window, self.temperature = int(window), float(temperature)
        self.count = 0
        """Updates observed in the current window."""
        self.window_sum: Tensor | None = None
        self.means: list[Tensor] = []
        """The mean losses of the last two complete windows, older first."""
        self._weights: Tensor | None = None

    def weights(self, losses: Tensor) -> Tensor:
        if self._weights is None or self._weights.numel() != losses.numel():
            self._weights = self._compute(losses)
        self.last_weights = self._weights
        return self._weights

    def _compute(self, like: Tensor) -> Tensor:
        if len(self.means) < 2:
            return torch.ones_like(like)
        b, a = (m.to(like) for m in self.means)
        ratio = 1.0 + (a - b) / b.abs().clamp_min(EPS)
        return like.numel() * torch.softmax(ratio / self.temperature, dim=0)

    def observe(
        self,
        losses: Tensor,
        losses_after: Tensor | None = None,
        shared_grad_norms: Tensor | None = None,
    ) -> None:
        check_finite_losses(self.task_names, losses=losses)
        losses = losses.detach()
        if self.window_sum is None:
            self.window_sum = losses.clone()
        else:
            self.window_sum = self.window_sum.to(losses) + losses
        self.count += 1
        if self.count == self.window:
            self.means = [*self.means, self.window_sum / self.window][-2:]
            self.count, self.window_sum, self._weights = 0, None, None

    def state_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "window_sum": None if self.window_sum is None else self.window_sum.clone(),
            "means": [m.clone() for m in self.means],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count = int(state["count"])
        self.window_sum = state["window_sum"]
        self.means = list(state["means"])
        self._weights = None

    def options(self) -> dict[str, Any]:
        return {"window": self.window, "temperature": self.temperature}
