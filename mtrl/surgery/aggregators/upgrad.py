"""UPGrad and DualProj (Quinton & Rey, 2024, "Jacobian Descent for Multi-Objective
Optimization", arXiv:2406.16232), as in torchjd, the authors' library."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
from annotated_types import Ge
from torch import Tensor

from mtrl.configtypes import Float
from mtrl.surgery.aggregators.base import Solver, Weighting
from mtrl.surgery.aggregators.device_solvers import DUAL_CONE_ITERS, dual_cone_weights_device
from mtrl.surgery.aggregators.qp import project_dual_cone
from mtrl.surgery.aggregators.registry import register_aggregator


def dual_gramian(gram: np.ndarray, norm_eps: float, reg_eps: float) -> np.ndarray:
    """torchjd's QP matrix: A / tr(A) (zero if tr(A) < norm_eps) plus reg_eps times I."""
    trace = float(np.trace(gram))
    tasks = gram.shape[0]
    scaled = gram / trace if trace >= norm_eps and trace > 0 else np.zeros_like(gram)
    return scaled + reg_eps * np.eye(tasks)


class _DualConeWeighting(Weighting):
    """Shared options and solvers of the dual-cone projections (the docstrings of the subclasses
    say them): the weights are the sum of the projections of the rows of ``targets``."""

    device_solver = True
    # one Triton kernel per solve (fused_solvers=true only): not yet run on a GPU, where an
    # earlier orthant kernel, without its support steps refined and checked solved, was wrong
    fusable = True

    def __init__(
        self,
        reg_eps: Annotated[Float, Ge(0)] = 1e-4,
        norm_eps: Annotated[Float, Ge(0)] = 1e-4,
        solver: Solver = "auto",
    ) -> None:
        self.reg_eps, self.norm_eps = float(reg_eps), float(norm_eps)
        self.solver = solver

    def targets(self, tasks: int, like: Tensor) -> Tensor:
        """The weights [K, T] whose combinations of the task gradients are projected."""
        raise NotImplementedError

    def weights(self, gram: Tensor) -> Tensor:
        a = dual_gramian(gram.numpy(), self.norm_eps, self.reg_eps)
        targets = self.targets(gram.shape[0], gram).numpy()
        return torch.from_numpy(project_dual_cone(a, targets).sum(axis=0))

    def device_weights(self, gram: Tensor) -> Tensor:
        targets = self.targets(gram.shape[0], gram)
        return dual_cone_weights_device(
            gram, targets, self.reg_eps, self.norm_eps, DUAL_CONE_ITERS, self.fused_solver
        ).sum(dim=0)

    def options(self) -> dict[str, Any]:
        return {"reg_eps": self.reg_eps, "norm_eps": self.norm_eps, "solver": self.solver}


@register_aggregator("upgrad")
class UPGrad(_DualConeWeighting):
    """Project each task gradient onto the dual cone of all of them, then average.

    The projections conflict with no task, so neither does their mean; with no conflicting pair
    the direction is the mean gradient, and identical task gradients give that gradient (scale:
    the mean's, 1/T per task: torchjd's default uniform preference vector).

    Paper: Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv:2406.16232,
    2024; the code followed is torchjd 0.18 (the authors'). For a target u the solver finds
    min vᵀA'v subject to v >= u, the dual of projecting uᵀG onto the dual cone {d : G d >= 0}
    (the paper's Proposition 1): exactly, by Lawson-Hanson NNLS (``qp.project_dual_cone``) where
    torchjd calls quadprog, on torchjd's A' = A / tr(A) + reg_eps I. The paper's projection is
    exact (reg_eps = 0, which this solver allows even for a singular A); torchjd and LibMTL (a
    copy of torchjd) regularise, so a task may conflict slightly: g_i·d >= -reg_eps tr(A) w_i,
    with w the weights.

    :param reg_eps: added to the diagonal of the trace-normalised Gramian (torchjd's default;
        0 gives the exact projection).
    :param norm_eps: if tr(G Gᵀ) is below this (an absolute threshold, as in torchjd) the
        Gramian counts as zero and the weights are the mean's.
    :param solver: where the projections are solved: ``host`` (exact NNLS, after copying the
        Gramian to the CPU: a sync on a GPU), ``device`` (``dual_cone_weights_device``: tensor
        ops on the gradients' device, no sync; interior-point steps, then an exact step on the
        support they found; captured and checked against eager updates on an H200) or
        ``auto`` (the device in an update replayed from a CUDA graph, ``compile``; else the
        host).
    """

    description = "average of the task gradients each projected onto the no-conflict cone"
    paper = "Quinton & Rey 2024"
    compile_auto = True  # compiled on an H200: 4.18 vs 6.18 ms per update at T = 10

    def targets(self, tasks: int, like: Tensor) -> Tensor:
        return torch.eye(tasks, dtype=like.dtype, device=like.device) / tasks


@register_aggregator("dualproj")
class DualProj(_DualConeWeighting):
    """Project the mean gradient onto the dual cone of the task gradients.

    The direction is the vector closest to the mean gradient that conflicts with no task (GEM's
    projection, Lopez-Paz & Ranzato, NeurIPS 2017, eq. 11, as torchjd's ``DualProj``). It is the
    mean when no task conflicts with the mean; identical task gradients give that gradient
    (scale 1).

    Paper: Quinton & Rey, "Jacobian Descent for Multi-Objective Optimization", arXiv:2406.16232,
    2024, following torchjd 0.18; the solver, the regularisation and how far it lets a task
    conflict (g_i·d >= -reg_eps tr(A) w_i) are those of ``UPGrad`` with the mean as the target.

    :param reg_eps: added to the diagonal of the trace-normalised Gramian (torchjd's default;
        0 gives the exact projection).
    :param norm_eps: if tr(G Gᵀ) is below this (an absolute threshold, as in torchjd) the
        Gramian counts as zero and the weights are the mean's.
    :param solver: where the projections are solved: ``host`` (exact NNLS, after copying the
        Gramian to the CPU: a sync on a GPU), ``device`` (``dual_cone_weights_device``: tensor
        ops on the gradients' device, no sync; interior-point steps, then an exact step on the
        support they found; captured and checked against eager updates on an H200) or
        ``auto`` (the device in an update replayed from a CUDA graph, ``compile``; else the
        host).
    """

    description = "the mean gradient projected onto the cone that conflicts with no task"
    paper = "Quinton & Rey 2024"

    def targets(self, tasks: int, like: Tensor) -> Tensor:
        return torch.full((1, tasks), 1.0 / tasks, dtype=like.dtype, device=like.device)
