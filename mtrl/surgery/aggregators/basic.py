"""The baselines: plain averaging (multi-task SAC as published) and summing."""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.surgery.aggregators.base import Aggregation, Aggregator
from mtrl.surgery.aggregators.registry import register_aggregator


@register_aggregator("mean")
class Mean(Aggregator):
    """The average of the task gradients: the gradient of the mean loss (plain MT-SAC)."""

    description = "average of the task gradients (the plain multi-task baseline)"

    def _aggregate(self, G: Tensor) -> Aggregation:
        weights = torch.full((G.shape[0],), 1.0 / G.shape[0], dtype=G.dtype, device=G.device)
        return Aggregation(G.mean(dim=0), weights)


@register_aggregator("sum")
class Sum(Aggregator):
    """The sum of the task gradients: the gradient of the summed loss."""

    description = "sum of the task gradients"

    def _aggregate(self, G: Tensor) -> Aggregation:
        weights = torch.ones(G.shape[0], dtype=G.dtype, device=G.device)
        return Aggregation(G.sum(dim=0), weights)
