"""Cheap per-update diagnostics of the task gradients, computed from the T x T Gramian."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from mtrl.surgery.aggregators.base import Aggregation, gramian
from mtrl.surgery.taskgrads import TaskGradients


@dataclass
class GradientDiagnostics:
    """What the logging layer records about one aggregation.

    :param task_norms: ‖g_t‖ per task [T].
    :param cosine: pairwise cosine similarities [T, T] (0 where a gradient is zero).
    :param conflict_fraction: fraction of task pairs i < j with cosine < 0.
    :param direction_norm: ‖direction‖.
    """

    task_norms: Tensor
    cosine: Tensor
    conflict_fraction: float
    direction_norm: float


def gradient_diagnostics(
    G: Tensor | TaskGradients, result: Aggregation | None = None
) -> GradientDiagnostics:
    """Diagnostics for G [T, P] (flat or blocks); reuses the Gramian and weights in ``result``."""
    gram = result.gram if result is not None and result.gram is not None else gramian(G)
    gram = gram.to(device="cpu", dtype=torch.float64)  # a device solver's Gramian stays on G's
    norms = gram.diagonal().clamp_min(0).sqrt()
    denom = torch.outer(norms, norms)
    cosine = torch.where(denom > 0, gram / denom.clamp_min(1e-300), torch.zeros_like(gram))
    tasks = gram.shape[0]
    upper = torch.triu_indices(tasks, tasks, offset=1)
    pairs = cosine[upper[0], upper[1]]
    conflict = float((pairs < 0).double().mean()) if pairs.numel() else 0.0
    if result is not None and result.weights is None:  # not a weighting: measure the direction
        parts = [result.direction] if isinstance(result.direction, Tensor) else result.direction
        direction_norm = float(sum(float(p.double().pow(2).sum()) for p in parts) ** 0.5)
    else:  # ‖wᵀG‖ from the Gramian; without a result, the mean direction
        w = (
            result.weights.detach().to(device="cpu", dtype=torch.float64)
            if result is not None
            else torch.full((tasks,), 1.0 / tasks, dtype=torch.float64)
        )
        direction_norm = float((w @ gram @ w).clamp_min(0).sqrt())
    return GradientDiagnostics(norms.float(), cosine.float(), conflict, direction_norm)
