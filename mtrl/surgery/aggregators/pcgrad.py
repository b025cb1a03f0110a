"""PCGrad (Yu et al., 2020, "Gradient Surgery for Multi-Task Learning"), Algorithm 1."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from mtrl.surgery.aggregators.base import Solver, Weighting
from mtrl.surgery.aggregators.device_solvers import pcgrad_weights_device, random_order_device
from mtrl.surgery.aggregators.registry import register_aggregator


def pcgrad_weights(gram: np.ndarray, order: np.ndarray) -> np.ndarray:
    """Coefficients C [T, T] with ``C @ G`` the projected gradients of PCGrad.

    Each task i starts from its own gradient and, visiting the other tasks j in ``order[i]``,
    removes the component along the *original* g_j whenever its current projected gradient
    conflicts with g_j (negative inner product). Every step subtracts a multiple of an original
    gradient, so g_i^PC stays a combination of the rows of G and all inner products follow from
    the Gramian. The T tasks are processed together, one position of their orders at a time.

    :param gram: the Gramian G Gᵀ, float64 [T, T].
    :param order: [T, T-1] integers; row i is a permutation of the tasks other than i.
    """
    tasks = gram.shape[0]
    coeffs = np.eye(tasks)
    sq_norms = np.diag(gram)
    rows = np.arange(tasks)
    for k in range(order.shape[1]):
        j = order[:, k]
        dots = np.einsum("im,im->i", coeffs, gram[j])  # <g_i^PC, g_j> for each i
        conflict = (dots < 0) & (sq_norms[j] > 0)  # a zero gradient never conflicts
        step = np.where(conflict, dots / np.where(sq_norms[j] > 0, sq_norms[j], 1.0), 0.0)
        coeffs[rows, j] -= step
    return coeffs


@register_aggregator("pcgrad")
class PCGrad(Weighting):
    """Project each task's gradient off the original gradients it conflicts with, then combine.

    :param reduction: ``sum`` of the projected gradients (the paper) or their ``mean`` (the
        Meta-World+ reference).
    :param order: the order in which a task visits the others: ``per_task``, a random
        permutation drawn for each task (the paper's Algorithm 1), or ``shared``, one random
        permutation of all tasks per update that every task follows, skipping itself (the
        official code and the Meta-World+ reference).
    :param solver: where the weights are computed: ``host`` (numpy, after copying the Gramian
        to the CPU: a sync on a GPU), ``device`` (tensor ops on the gradients' device, no sync,
        capturable in a CUDA graph) or ``auto`` (the device in an update replayed from a CUDA
        graph, ``compile``; else the host, faster there).
    :param seed: seeds the random orders (None: fresh entropy); not an option: runs pass their
        seed.

    The device path computes the same coefficients (``pcgrad_weights_device``) but draws the
    orders from torch's random numbers on the gradients' device (``random_order_device``), not
    from the seeded numpy generator that ``state_dict`` saves: on a GPU the stream of orders
    differs from the CPU's, equally random, and is seeded by the run's torch seed (CUDA graph
    replays draw new orders). ``device_generator``, when set, is used for those draws instead.
    """

    description = "project each task gradient off the ones it conflicts with, then combine"
    paper = "Yu et al. 2020"
    stochastic = True
    stateful = True  # the random generator of the task orders
    device_solver = True
    compile_auto = True  # projections compiled on an H200: 1.79 vs 1.87 ms per update at T = 10

    def __init__(
        self,
        reduction: Literal["sum", "mean"] = "sum",
        order: Literal["per_task", "shared"] = "per_task",
        solver: Solver = "auto",
        seed: int | None = None,
    ) -> None:
        self.reduction = reduction
        self.order = order
        self.solver = solver
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.device_generator: torch.Generator | None = None

    def random_order(self, tasks: int) -> np.ndarray:
        """For each task a random order of the other tasks, shape [T, T-1]."""
        if self.order == "shared":
            perm = self.rng.permutation(tasks)
            return np.stack([perm[perm != i] for i in range(tasks)])
        keys = self.rng.random((tasks, tasks))
        np.fill_diagonal(keys, np.inf)  # each task itself sorts last and is dropped
        return np.argsort(keys, axis=1)[:, : tasks - 1]

    def weights(self, gram: Tensor) -> Tensor:
        gram_np = gram.numpy()
        coeffs = pcgrad_weights(gram_np, self.random_order(gram_np.shape[0]))
        weights = coeffs.sum(axis=0)
        if self.reduction == "mean":
            weights /= gram_np.shape[0]
        return torch.from_numpy(weights)

    def device_weights(self, gram: Tensor) -> Tensor:
        tasks = gram.shape[0]
        shared = self.order == "shared"
        order = random_order_device(tasks, shared, gram.device, self.device_generator)
        coeffs = self.solve_compiled(pcgrad_weights_device, gram, order)  # draws stay eager
        return coeffs.mean(dim=0) if self.reduction == "mean" else coeffs.sum(dim=0)

    def options(self) -> dict[str, Any]:
        return {
            "reduction": self.reduction,
            "order": self.order,
            "solver": self.solver,
            "seed": self.seed,
        }

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
