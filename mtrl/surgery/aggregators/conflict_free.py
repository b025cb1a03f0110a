"""ConFIG (Liu et al., 2024, "ConFIG: Towards Conflict-free Training of Physics Informed Neural
Networks"), as in the official code (tum-pbs/ConFIG)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtrl.surgery.aggregators.base import Aggregation, Solver, Weighting
from mtrl.surgery.aggregators.device_solvers import config_weights_device
from mtrl.surgery.aggregators.registry import register_aggregator
from mtrl.surgery.taskgrads import TaskGradients


def pinv_psd(a: Tensor, eps: float) -> Tensor:
    """Pseudo-inverse of a symmetric PSD matrix: eigenvalues up to ``len(a) * eps`` times the
    largest count as zero."""
    # torch's eigh, not numpy's: OpenBLAS threads left spinning after numpy's LAPACK call
    # double the CPU time of the torch work that follows (measured at T = 50, 2 cores).
    lam, vec = torch.linalg.eigh(a)
    keep = lam > lam.max().clamp(min=0) * len(a) * eps
    return (vec[:, keep] / lam[keep]) @ vec[:, keep].T


def config_weights(gram: Tensor, eps: float = torch.finfo(torch.float64).eps) -> Tensor:
    """Weights w with ``w @ G`` the ConFIG direction, from the Gramian K = G Gᵀ.

    With U the unit gradients (zero rows for zero gradients) the conflict-free direction is
    x = pinv(U) 1 = Uᵀ (U Uᵀ)⁺ 1, so x = Gᵀ w0 with w0 = D C⁺ 1, D = diag(1 / ‖g_i‖) and
    C = D K D the cosine matrix. ConFIG's length is Σ_i g_iᵀ x / ‖x‖, so the direction is
    (1ᵀ K w0 / w0ᵀ K w0) x.

    :param gram: the Gramian, float64 [T, T] on the CPU.
    :param eps: the precision of G (the Gramian is no more precise): sets the rank cutoff.
    """
    sq_norms = gram.diagonal()
    inv_norms = torch.zeros_like(sq_norms)
    inv_norms[sq_norms > 0] = sq_norms[sq_norms > 0].rsqrt()
    cosines = gram * inv_norms[:, None] * inv_norms[None, :]
    ones = torch.ones(len(gram), dtype=gram.dtype)
    w0 = inv_norms * (pinv_psd(cosines, eps) @ ones)
    sq_length = float(w0 @ gram @ w0)
    if not sq_length > 0:  # every gradient zero, or 1 orthogonal to the span: no direction
        return torch.zeros_like(ones)
    return w0 * (float(ones @ gram @ w0) / sq_length)


@register_aggregator("config")
class ConFIG(Weighting):
    """The direction at equal angles to all task gradients, its length their projections' sum.

    The direction x = pinv(U) 1 solves U x = 1 for the unit task gradients U (in the least-squares
    sense if it cannot), so every task gradient has the same positive cosine with it when the unit
    gradients are linearly independent; the length is Σ_i g_iᵀ x / ‖x‖ (the official
    ``ProjectionLength``). Identical task gradients g give T g.

    Paper: Liu, Chu, Thuerey, "ConFIG: Towards Conflict-free Training of Physics Informed Neural
    Networks", ICLR 2025 (arXiv 2024), eq. 2. Code followed: tum-pbs/ConFIG ``ConFIGOperator``
    with its defaults (``EqualWeight``, ``ProjectionLength``); torchjd's ``ConFIG`` is the same
    computation. They solve on the [T, P] matrix (official: least squares, ``lstsq``; torchjd:
    ``pinv``; both give the minimum-norm least-squares x); here x comes from the T x T Gramian,
    whose eigenvalues up to T eps λ_max (eps: G's dtype) count as zero, a cutoff at sqrt(T eps)
    on the singular values of U where the references cut at about max(T, P) eps: they differ
    only for nearly dependent unit gradients. For T = 2 the official code uses a closed form
    (``ConFIG_update_double``) that gives the same direction. The momentum variant (M-ConFIG) is
    not implemented.

    :param solver: where the weights are computed: ``host`` (after copying the Gramian to the
        CPU: a sync on a GPU), ``device`` (``config_weights_device``: the same computation in
        tensor ops on the gradients' device, no sync) or ``auto`` (the device in an update
        replayed from a CUDA graph, ``compile``; else the host). In a captured update the
        eigendecomposition is Jacobi rotations (cuSOLVER's eigh is not captured), as for
        IMTL-G, and so is captured up to 16 tasks (``graph_tasks``).
    """

    description = "equal-angle direction to every task gradient, scaled by their projections"
    paper = "Liu et al. 2024"
    device_solver = True
    graph_tasks = 16
    fusable = True

    gram_eps: float = torch.finfo(torch.float64).eps

    def __init__(self, solver: Solver = "auto") -> None:
        self.solver = solver

    def _aggregate(self, G: TaskGradients) -> Aggregation:
        self.gram_eps = float(torch.finfo(G.dtype).eps)  # the rank cutoff follows G's precision
        return super()._aggregate(G)

    def weights(self, gram: Tensor) -> Tensor:
        return config_weights(gram, self.gram_eps)

    def device_weights(self, gram: Tensor) -> Tensor:
        return config_weights_device(gram, self.gram_eps, self.in_cuda_graph, self.fused_solver)

    def options(self) -> dict[str, Any]:
        return {"solver": self.solver}
