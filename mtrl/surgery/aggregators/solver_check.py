"""A check, on the device, that an aggregator's Triton kernels (``fused_solvers``) give the
directions its torch device solver gives, before a captured update relies on them.

The kernels are tested in Triton's interpreter on the CPU, but an interpreter can pass what a
GPU computes wrongly: an orthant variant of the simplex kernel gave UPGrad directions 0.36
(relative) off on an H200 where the interpreter was exact (BENCHMARKS.md). So ``GraphedUpdate``
solves a few problems of the run's size both ways on the run's device (once per aggregator,
task count and device in a process) and runs the torch solver where the two disagree.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import Tensor

from mtrl.errors import one_line
from mtrl.surgery.aggregators.base import Weighting

TOLERANCE = 1e-6
"""The largest direction gap (see ``direction_gap``) between the kernels and the torch solver
that counts as agreement on ``check_gramians``: in Triton's interpreter the two agree there to
5e-11 or better (CAGrad, MGDA, IMTL-G, ConFIG, Aligned-MTL at T = 2 to 16; UPGrad and
DualProj 2e-16 at T = 3 to 12); the earlier, wrong orthant kernel was 2e-4 to 0.36 off."""

_CHECKED: dict[tuple[str, int, str], str | None] = {}


def check_gramians(tasks: int, device: torch.device | str) -> dict[str, Tensor]:
    """Named T x T Gramians (float64, on ``device``) of float32 gradients, as training forms
    them: conflicting tasks of norms 0.1 to 10, more tasks than parameters (singular; where
    the orthant variant failed), far more (two parameters), a zero task and a duplicate task
    (singular support systems, which the kernels' Gauss-Jordan sweeps solve less exactly
    than Cholesky; refined, they agree). Seeded: the same problems in every run. Each has one
    direction that the solvers reach to rounding (their exact support steps succeed)."""
    gen = torch.Generator().manual_seed(tasks)

    def rows(params: int) -> Tensor:
        G = torch.randn(tasks, params, generator=gen)
        return G * torch.logspace(-1, 1, tasks)[:, None]

    spread = rows(4 * tasks)
    spread[: tasks // 3] *= -1
    zero = rows(2 * tasks)
    zero[tasks // 2] = 0.0
    duplicate = rows(3 * tasks)
    duplicate[tasks // 2] = duplicate[0]
    problems = {
        "conflicting tasks": spread,
        "more tasks than parameters": rows(max(1, tasks // 2)),
        "far more tasks than parameters": rows(2),
        "a zero task": zero,
        "a duplicate task": duplicate,
    }
    return {name: (G.double() @ G.double().T).to(device) for name, G in problems.items()}


def direction_gap(gram: Tensor, weights: Tensor, other: Tensor) -> float:
    """‖(w - w')ᵀG‖ / max_i ‖g_i‖: how far apart two weightings' directions are, relative to
    the largest task gradient, from the Gramian G Gᵀ alone."""
    diff = weights - other
    size = gram.diagonal().amax().clamp(min=torch.finfo(gram.dtype).tiny)
    return float(torch.sqrt((diff @ gram @ diff).clamp(min=0) / size))


Solve = Callable[[Tensor], Tensor]
"""Task weights [T] from a T x T Gramian (a ``device_weights``)."""


def solver_mismatch(reference: Solve, candidate: Solve, gramians: dict[str, Tensor]) -> str | None:
    """Why ``candidate``'s weights do not give ``reference``'s directions on ``gramians`` (the
    first problem where they are more than ``TOLERANCE`` apart, or not finite), or None."""
    for name, gram in gramians.items():
        gap = direction_gap(gram, reference(gram), candidate(gram))
        if not gap <= TOLERANCE:
            return f"on {name} its direction was {gap:.1e} (relative) off the torch solver's"
    return None


def fused_mismatch(aggregator: Weighting, tasks: int, device: torch.device | str) -> str | None:
    """Why ``aggregator``'s Triton kernels cannot stand in for its torch device solver at
    ``tasks`` tasks on ``device`` (``solver_mismatch`` on ``check_gramians``, or the error
    that stopped them), or None; the aggregator's own settings are left as they are. Checked
    once per aggregator (type and options), task count and device in a process."""
    key = (repr(aggregator), tasks, str(torch.device(device)))
    if key not in _CHECKED:
        torch_solver, fused = copy.copy(aggregator), copy.copy(aggregator)
        for solver, fuses in ((torch_solver, False), (fused, True)):
            # the kernels run in captured updates only, so both take the captured path
            solver.in_cuda_graph, solver.fused_solver, solver.compile_solver = True, fuses, False
        try:
            _CHECKED[key] = solver_mismatch(
                torch_solver.device_weights, fused.device_weights, check_gramians(tasks, device)
            )
        except Exception as exc:  # a kernel this GPU's compiler rejects, too many tasks, ...
            _CHECKED[key] = f"they did not run: {one_line(exc)}"
    return _CHECKED[key]
