"""IMTL-G (Liu et al., 2021, "Towards Impartial Multi-task Learning", ICLR), the gradient part."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from mtrl.surgery.aggregators.base import Aggregation, Solver, Weighting
from mtrl.surgery.aggregators.blas import single_blas_thread
from mtrl.surgery.aggregators.device_solvers import imtl_g_weights_device
from mtrl.surgery.aggregators.qp import nonzero_tasks
from mtrl.surgery.aggregators.registry import register_aggregator
from mtrl.surgery.taskgrads import TaskGradients

_ZERO_SUM = 1e-12


def imtl_g_weights(gram: np.ndarray, rtol: float) -> np.ndarray:
    """Weights A⁺n / 1ᵀA⁺n, n_i = ‖g_i‖, on A scaled to unit mean diagonal (the weights do not
    depend on the scale). Eigenvalues below ``rtol`` times the largest are dropped from A⁺;
    zero weights if 1ᵀA⁺n vanishes (no direction has equal non-zero projections)."""
    weights = np.zeros(gram.shape[0])
    live = nonzero_tasks(gram)  # a zero gradient gets weight 0 (A⁺ would give it rounding noise)
    if not live.any():
        return weights
    a = gram[np.ix_(live, live)]
    a = a / (np.trace(a) / a.shape[0])
    with single_blas_thread():
        vals, vecs = np.linalg.eigh(0.5 * (a + a.T))
    keep = np.abs(vals) > rtol * np.abs(vals).max()
    norms = np.sqrt(np.diag(a))
    v = vecs[:, keep] @ ((vecs[:, keep].T @ norms) / vals[keep])
    total = v.sum()
    if abs(total) >= _ZERO_SUM:
        weights[live] = v / total
    return weights


@register_aggregator("imtl-g")
class IMTLG(Weighting):
    """The combination of the task gradients, weights summing to 1, whose projections on every
    unit task gradient are equal.

    With A = G Gᵀ and n_i = ‖g_i‖ the weights are A⁺n / 1ᵀA⁺n, so g_i·d is ‖g_i‖ / 1ᵀA⁺n for
    every task when the rows of G are independent (with dependent rows the equal projections
    may not exist, and A⁺ gives the least-squares fit). Identical task gradients give that
    gradient (scale 1: the weights sum to 1).

    Paper: Liu et al., "Towards Impartial Multi-task Learning", ICLR 2021, IMTL-G: the closed
    form α_{2..T} = g_1 Uᵀ(D Uᵀ)⁻¹, α_1 = 1 - Σα (D, U: differences of the gradients and of the
    unit gradients), as LibMTL writes it (no official code was released). Follows torchjd's
    ``IMTLG`` (Quinton & Rey 2024), the same weights wherever G has independent rows, and
    defined where it does not (identical or zero gradients, T > P), where LibMTL's inverse does
    not exist (NaN or noise): a zero gradient gets weight 0, and the weights are 0 if 1ᵀA⁺n
    vanishes (no direction has equal non-zero projections, e.g. g and -g). As in torchjd, A⁺
    drops eigenvalues below T eps of the largest, eps that of the gradients' dtype (torch's
    pinv default in the dtype torchjd computes in; the Gramian is no more exact than that).
    A is scaled first, so the 1e-12 zero-sum test (torchjd's, absolute) is scale-free.
    Where 1ᵀA⁺n < 0 (4% of random 2-5 task problems) the equal projections are negative: the
    direction ascends every loss. The paper's formula, LibMTL and torchjd all do so; kept.
    IMTL-L, the paper's loss-scale part, is not included.

    :param solver: where the weights are computed: ``host`` (numpy, after copying the Gramian
        to the CPU: a sync on a GPU), ``device`` (tensor ops on the gradients' device, no
        sync) or ``auto`` (the device in an update replayed from a CUDA graph, ``compile``;
        else the host, faster there).

    The device path (``imtl_g_weights_device``) computes the same weights (to ~1e-11 in the
    tests) with ``torch.linalg.eigh``, zero-gradient tasks masked instead of dropped. cuSOLVER's
    eigendecomposition does not run under CUDA-graph capture (pytorch/pytorch#188355; an H200
    refused it), so in a captured update (``in_cuda_graph``) the eigendecomposition is Jacobi
    rotations in tensor ops (``jacobi_eigh``, to ~2e-11 of the host's weights up to 16 tasks):
    about 1,000 ops per solve at T = 10 and 2,000 at T = 16, which replayed from a graph
    should still cost less than an eager update; above 16 tasks (6,400 at T = 50) they
    would not, and such updates stay eager (``graph_tasks``). With ``fused_solvers=true`` the
    rotations run in one Triton kernel per solve (``fused_ip.jacobi_eigh_fused``; not run on
    a GPU yet, so ``auto`` leaves it off).
    """

    description = "combination with equal projections on every unit task gradient (closed form)"
    paper = "Liu et al. 2021"
    device_solver = True
    graph_tasks = 16
    fusable = True

    def __init__(self, solver: Solver = "auto") -> None:
        self.solver = solver
        self.eps = float(torch.finfo(torch.float64).eps)

    def _aggregate(self, G: TaskGradients) -> Aggregation:
        self.eps = float(torch.finfo(G.dtype).eps)  # the pinv cutoff of the next ``weights``
        return super()._aggregate(G)

    def weights(self, gram: Tensor) -> Tensor:
        rtol = gram.shape[0] * self.eps
        return torch.from_numpy(imtl_g_weights(gram.numpy(), rtol))

    def device_weights(self, gram: Tensor) -> Tensor:
        rtol = gram.shape[0] * self.eps
        return imtl_g_weights_device(gram, rtol, self.in_cuda_graph, self.fused_solver)

    def options(self) -> dict[str, Any]:
        return {"solver": self.solver}
