"""MGDA (Sener & Koltun, 2018, "Multi-Task Learning as Multi-Objective Optimization")."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from mtrl.surgery.aggregators.base import Solver, Weighting
from mtrl.surgery.aggregators.device_solvers import MGDA_ITERS, mgda_weights_device
from mtrl.surgery.aggregators.qp import min_norm_simplex
from mtrl.surgery.aggregators.registry import register_aggregator


@register_aggregator("mgda")
class MGDA(Weighting):
    """The min-norm point of the convex hull of the task gradients (Désidéri's MGDA direction).

    The weights w on the simplex minimise wᵀ A w, A = G Gᵀ, and the direction is wᵀG: a common
    descent direction for every task, or zero at a Pareto-stationary point. Identical task
    gradients give that gradient (scale 1: the weights sum to 1).

    Paper: Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018.
    The solver is exact: the QP becomes a non-negative least-squares problem on a square root of
    A (scaled to unit mean diagonal), solved by the Lawson-Hanson active-set method
    (``qp.min_norm_simplex``); a singular A is fine. The references iterate towards the same
    minimiser, to about their tolerance: the paper's Algorithm 2 and torchjd's ``MGDA`` run
    Frank-Wolfe (torchjd stops once the step is below 1e-3, after at most 100 steps); the
    official code (isl-org/MultiObjectiveOptimization) and LibMTL take projected gradient steps
    until the weights change by less than 1e-5, and for two tasks clip the weights to
    [0.001, 0.999] where the exact answer is 0 or 1. The official code also offers gradient
    normalisations (``l2``, ``loss``, ``loss+``) before solving; LibMTL's default is none, as
    here. MGDA-UB (gradients of the shared representation instead of the parameters) is not
    implemented.

    :param solver: where the QP is solved: ``host`` (NNLS, after copying the Gramian to the
        CPU: a sync on a GPU), ``device`` (tensor ops on the gradients' device, no sync; the
        ops of CAGrad's device solver, captured and checked on an H200) or ``auto``
        (the device in an update replayed from a CUDA graph, ``compile``; else the host).

    The device path (``mgda_weights_device``) runs a fixed number of interior-point steps
    (``MGDA_ITERS``) on the scaled Gramian, then solves the KKT system on candidate supports
    they found and keeps the first exact solution that checks out as optimal (in the tests,
    the directions agree with the host's to cosine 1 - 1e-15 on random problems where they
    are not ~0, 1 - 2e-9 with one gradient 1e6 times the others).
    """

    description = "min-norm point of the convex hull of the task gradients (exact QP)"
    paper = "Sener & Koltun 2018"
    device_solver = True
    compile_auto = True  # compiled on an H200: 4.27 vs 5.86 ms per update at T = 10
    # fused and compiled 3.13 vs 4.30 ms compiled on an H200 at T = 10, but its training
    # updates differed from the torch solver's (BENCHMARKS.md): fused only when asked
    fusable = True

    def __init__(self, solver: Solver = "auto") -> None:
        self.solver = solver

    def weights(self, gram: Tensor) -> Tensor:
        return torch.from_numpy(min_norm_simplex(gram.numpy()))

    def device_weights(self, gram: Tensor) -> Tensor:
        return mgda_weights_device(gram, MGDA_ITERS, self.fused_solver)

    def options(self) -> dict[str, Any]:
        return {"solver": self.solver}
