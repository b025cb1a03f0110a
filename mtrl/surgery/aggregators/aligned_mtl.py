"""Aligned-MTL (Senushkin et al., 2023, "Independent Component Alignment for Multi-Task
Learning"), as in the official code (SamsungLabs/MTL)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from mtrl.surgery.aggregators.base import Aggregation, Solver, Weighting
from mtrl.surgery.aggregators.device_solvers import aligned_mtl_weights_device
from mtrl.surgery.aggregators.registry import register_aggregator
from mtrl.surgery.taskgrads import TaskGradients

ScaleMode = Literal["min", "median", "rmse"]


def aligned_mtl_transform(
    gram: Tensor, scale_mode: ScaleMode = "min", eps: float = torch.finfo(torch.float64).eps
) -> Tensor:
    """The balance transform B [T, T]: the aligned task gradients are the rows of B G.

    With K = V Λ Vᵀ over the R eigenvalues above T eps λ_max, B = sqrt(s) V Λ^-1/2 Vᵀ, so
    B K B = s V Vᵀ: the aligned gradients are orthogonal with equal norms sqrt(s) (on the span
    of G's rows). s is the smallest kept eigenvalue (``min``, σ_min² of the paper), their lower
    median (``median``, as ``torch.median``) or their mean (``rmse``: s is then the mean square
    of G's singular values). An all-zero Gramian gives B = I.
    """
    lam, vec = torch.linalg.eigh(gram)  # torch's, not numpy's: see conflict_free.pinv_psd
    keep = lam > lam.max().clamp(min=0) * len(gram) * eps
    if not keep.any():
        return torch.eye(len(gram), dtype=gram.dtype)
    lam, vec = lam[keep], vec[:, keep]  # ascending
    if scale_mode == "min":
        scale = lam[0]
    elif scale_mode == "median":
        scale = lam[(len(lam) - 1) // 2]
    else:
        scale = lam.mean()
    return scale.sqrt() * (vec * lam.rsqrt()) @ vec.T


@register_aggregator("aligned-mtl")
class AlignedMTL(Weighting):
    """Sum of the task gradients made orthogonal with equal norms (aligned to their principal
    components).

    The aligned gradients are the rows of B G with B = sqrt(s) V Λ^-1/2 Vᵀ from the
    eigen-decomposition G Gᵀ = V Λ Vᵀ (``aligned_mtl_transform``): the closest orthogonal
    system to G (Procrustes), rescaled so that all its vectors have the norm sqrt(s). The
    direction is their sum (weights B 1). Identical task gradients g give T g.

    Paper: Senushkin, Patakin, Kuznetsov, Konushin, "Independent Component Alignment for
    Multi-Task Learning", CVPR 2023, Algorithm 1. Code followed: SamsungLabs/MTL
    (``ProcrustesSolver``, ``AlignedMTLBalancer``, scale_mode ``min`` by default). Where the
    references differ: the paper combines the aligned gradients with pre-defined task weights,
    the official code and LibMTL sum them (followed here), torchjd averages them (its default
    preference vector 1/T: its direction is this one / T). Eigenvalues up to T eps λ_max count
    as zero, eps being G's precision (official code and LibMTL: float32's always, their
    gradients being float32; torchjd: the Gramian's dtype). An all-zero G gives zero (the
    official code fails, torchjd uses B = I). LibMTL has only ``min``.

    :param scale_mode: the squared norm s of every aligned gradient: ``min``, the smallest
        eigenvalue of G Gᵀ (the paper's σ_min²; official default), ``median``, their lower
        median, or ``rmse``, their mean (the official code's names).
    :param solver: where the weights are computed: ``host`` (after copying the Gramian to the
        CPU: a sync on a GPU), ``device`` (``aligned_mtl_weights_device``: the same computation
        in tensor ops on the gradients' device, no sync) or ``auto`` (the device in an update
        replayed from a CUDA graph, ``compile``; else the host). In a captured update the
        eigendecomposition is Jacobi rotations (cuSOLVER's eigh is not captured), as for
        IMTL-G, and so is captured up to 16 tasks (``graph_tasks``).
    """

    description = "sum of the task gradients aligned to orthogonal components of equal norm"
    paper = "Senushkin et al. 2023"
    device_solver = True
    graph_tasks = 16
    fusable = True

    gram_eps: float = torch.finfo(torch.float64).eps

    def __init__(self, scale_mode: ScaleMode = "min", solver: Solver = "auto") -> None:
        self.scale_mode, self.solver = scale_mode, solver

    def _aggregate(self, G: TaskGradients) -> Aggregation:
        self.gram_eps = float(torch.finfo(G.dtype).eps)  # the rank cutoff follows G's precision
        return super()._aggregate(G)

    def weights(self, gram: Tensor) -> Tensor:
        return aligned_mtl_transform(gram, self.scale_mode, self.gram_eps).sum(dim=1)

    def device_weights(self, gram: Tensor) -> Tensor:
        return aligned_mtl_weights_device(
            gram, self.scale_mode, self.gram_eps, self.in_cuda_graph, self.fused_solver
        )

    def options(self) -> dict[str, Any]:
        return {"scale_mode": self.scale_mode, "solver": self.solver}
