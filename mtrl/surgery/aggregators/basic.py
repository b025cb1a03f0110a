"""The baselines: plain averaging (multi-task SAC as published) and summing."""

from __future__ import annotations

import torch
from torch import Tensor

from mtrl.surgery.aggregators.base import Aggregation, Aggregator
from mtrl.surgery.aggregators.registry import register_aggregator
from mtrl.surgery.taskgrads import TaskGradients


@register_aggregator("mean")
class Mean(Aggregator):
    """The average of the task gradients: the gradient of the mean loss (plain MT-SAC)."""

    description = "average of the task gradients (the plain multi-task baseline)"
    paper = "multi-task SAC, Yu et al. 2019 (Meta-World)"
    device_solver = True

    def _aggregate(self, G: TaskGradients) -> Aggregation:
        tasks = G.num_tasks
        return Aggregation([], torch.full((tasks,), 1.0 / tasks, dtype=G.dtype, device=G.device))

    def fixed_weights(self, tasks: int, device: torch.device | None = None) -> Tensor:
        return torch.full((tasks,), 1.0 / tasks)


@register_aggregator("sum")
class Sum(Aggregator):
    """The sum of the task gradients: the gradient of the summed loss."""

    description = "sum of the task gradients"
    device_solver = True

    def _aggregate(self, G: TaskGradients) -> Aggregation:
        return Aggregation([], torch.ones(G.num_tasks, dtype=G.dtype, device=G.device))

    def fixed_weights(self, tasks: int, device: torch.device | None = None) -> Tensor:
        return torch.ones(tasks)
