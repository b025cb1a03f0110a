"""Gradient Vaccine (Wang et al., 2021, "Gradient Vaccine: Investigating and Improving
Multi-task Optimization in Massively Multilingual Models"), as LibMTL and torchjd implement it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
import torch
from annotated_types import Ge, Le
from torch import Tensor

from mtrl.configtypes import Float
from mtrl.errors import MtrlError
from mtrl.surgery.aggregators.base import Aggregation, Solver, Weighting
from mtrl.surgery.aggregators.device_solvers import gradvac_weights_device, random_order_device
from mtrl.surgery.aggregators.registry import register_aggregator
from mtrl.surgery.taskgrads import TaskGradients

EPS = 1e-8
"""Added to the denominators, as in LibMTL and torchjd."""


def gradvac_coefficients(
    grams: np.ndarray, targets: np.ndarray, order: np.ndarray, beta: float, eps: float = EPS
) -> np.ndarray:
    """Coefficients C [B, T, T] with ``C[b] @ G_b`` the vaccinated gradients of parameter group b.

    Each task i starts from its own gradient and visits the other tasks j in ``order[i]``: if
    the cosine φ of its current gradient with the original g_j is below the target φ̂_ij, it adds
    the multiple of g_j that raises φ to φ̂_ij; then φ̂_ij <- (1 - beta) φ̂_ij + beta φ. Only
    multiples of original gradients are added, so every inner product follows from the
    Gramians; tasks and groups are independent, processed together one position of the orders
    at a time. A zero g_j is skipped (the references divide by eps and add a huge multiple).

    :param grams: per-group Gramians G_b G_bᵀ, float64 [B, T, T].
    :param targets: the EMA targets φ̂ [B, T, T], updated in place.
    :param order: [T, T-1] integers; row i is a permutation of the tasks other than i.
    """
    tasks = grams.shape[1]
    coeffs = np.broadcast_to(np.eye(tasks), grams.shape).copy()
    dots = grams.copy()  # dots[b, i, m] = <g_i^vac, g_m> in group b
    norms = np.sqrt(np.clip(np.diagonal(grams, axis1=1, axis2=2), 0.0, None))  # [B, T]
    rows = np.arange(tasks)
    for k in range(order.shape[1]):
        j = order[:, k]
        dot = dots[:, rows, j]
        norm_i = np.sqrt(np.clip(np.einsum("bim,bim->bi", coeffs, dots), 0.0, None))
        norm_j = norms[:, j]
        cos = dot / (norm_i * norm_j + eps)
        target = targets[:, rows, j]
        sin = np.sqrt(np.clip(1.0 - cos**2, 0.0, None))
        sin_target = np.sqrt(np.clip(1.0 - target**2, 0.0, None))
        act = (cos < target) & (norm_j > 0)
        step = norm_i * (target * sin - cos * sin_target) / (norm_j * sin_target + eps)
        step = np.where(act, step, 0.0)
        coeffs[:, rows, j] += step
        dots += step[:, :, None] * grams[:, j, :]
        targets[:, rows, j] = (1.0 - beta) * target + beta * cos
    return coeffs


@register_aggregator("gradvac")
class GradVac(Weighting):
    """Raise each pair's gradient cosine to an EMA target of its past cosines, then sum.

    For each task i, visiting the others in a random order, a multiple of g_j is added to g_i
    whenever their cosine is below the target φ̂_ij, making it exactly φ̂_ij
    (``gradvac_coefficients``); the targets start at 0 (a zero target makes the step PCGrad's
    projection, taken only on conflicts) and follow the cosines by an EMA. The direction is the sum of the
    vaccinated gradients; identical task gradients g give T g.

    Paper: Wang, Tsvetkov, Firat, Cao, "Gradient Vaccine: Investigating and Improving
    Multi-task Optimization in Massively Multilingual Models", ICLR 2021, Algorithm 1. The
    paper has no public code; this follows LibMTL's ``GradVac`` (group types whole_model and
    all_matrix) and torchjd's ``GradVac`` (whole model, from the Gramian), which agree. Where
    they differ from each other or the paper: beta defaults to the paper's 1e-2 (LibMTL and
    torchjd: 0.5); ``layer`` is LibMTL's ``all_matrix`` (one group per parameter tensor; its
    ``all_layer`` groups the tensors of a module); the task orders come from a seeded generator
    (LibMTL: Python's ``random``, torchjd: torch's global generator); a zero gradient is
    skipped (see ``gradvac_coefficients``). Targets of another shape (a different T or number
    of blocks) restart from 0, as in torchjd.

    :param beta: the EMA rate of the cosine targets (the paper's 1e-2).
    :param granularity: ``whole``, one cosine per task pair over the whole gradient (a
        weighting of G), or ``layer``, one per parameter block and pair, each block vaccinated
        separately (the same task orders for every block).
    :param seed: seeds the random task orders (None: fresh entropy); not an option: runs pass
        their seed.
    :param solver: where the weights are computed with ``granularity=whole``: ``host`` (after
        copying the Gramian to the CPU: a sync on a GPU), ``device`` (``gradvac_weights_device``:
        the same steps in tensor ops on the gradients' device, no sync, the targets kept
        there) or ``auto`` (the device in an update replayed from a CUDA graph, ``compile``;
        else the host). As PCGrad's, the device path draws the task orders from torch's
        random numbers on the gradients' device (a CUDA graph's replays draw new ones), not
        from the run's seeded stream of orders. ``layer`` solves on the host.
    """

    description = "raise each pair's gradient cosine to an EMA target of past cosines, then sum"
    paper = "Wang et al. 2021"
    stochastic = True
    stateful = True  # the EMA targets and the random generator of the task orders
    device_solver = True

    def __init__(
        self,
        beta: Annotated[Float, Ge(0), Le(1)] = 0.01,
        granularity: Literal["whole", "layer"] = "whole",
        seed: int | None = None,
        solver: Solver = "auto",
    ) -> None:
        if solver == "device" and granularity == "layer":
            raise MtrlError("gradvac: solver=device needs granularity=whole (layer: the host)")
        self.beta = float(beta)
        self.granularity = granularity
        self.seed = seed
        self.solver = solver
        self.rng = np.random.default_rng(seed)
        self.targets: np.ndarray | None = None
        """The host path's targets (and the device path's as restored from a checkpoint)."""
        self.device_targets: Tensor | None = None
        """The device path's targets [T, T], updated in place (a CUDA graph replays into
        them); the latest of the two is the one set."""

    def random_order(self, tasks: int) -> np.ndarray:
        """For each task a random order of the other tasks, shape [T, T-1]."""
        keys = self.rng.random((tasks, tasks))
        np.fill_diagonal(keys, np.inf)  # each task itself sorts last and is dropped
        return np.argsort(keys, axis=1)[:, : tasks - 1]

    def vaccinate(self, grams: np.ndarray) -> np.ndarray:
        """Per-group task weights [B, T] from the per-group Gramians [B, T, T]; updates the
        targets."""
        if self.targets is None or self.targets.shape != grams.shape:
            self.targets = np.zeros(grams.shape)
        self.device_targets = None
        order = self.random_order(grams.shape[1])
        return gradvac_coefficients(grams, self.targets, order, self.beta).sum(axis=1)

    def weights(self, gram: Tensor) -> Tensor:
        return torch.from_numpy(self.vaccinate(gram.numpy()[None])[0])

    def runs_on_device(self) -> bool:
        return super().runs_on_device() and self.granularity == "whole"

    def device_weights(self, gram: Tensor) -> Tensor:
        tasks = gram.shape[0]
        if self.device_targets is None or self.device_targets.shape != (tasks, tasks):
            # in an eager update (a graph's warm-ups come first): from the host's targets if
            # they fit (a restored checkpoint), else 0
            start = self.targets
            fits = start is not None and start.shape == (1, tasks, tasks)
            self.device_targets = (
                torch.from_numpy(start[0].copy()).to(gram.device)
                if fits
                else torch.zeros_like(gram)
            )
            self.targets = None
        order = random_order_device(tasks, False, gram.device)
        return gradvac_weights_device(gram, self.device_targets, order, self.beta)

    def _aggregate(self, G: TaskGradients) -> Aggregation:
        if self.granularity == "whole":
            return super()._aggregate(G)
        grams = G.block_gramians().to(device="cpu", dtype=torch.float64)
        if self.check_finite and not bool(torch.isfinite(grams).all()):
            self.raise_non_finite(G)  # before the targets see NaN
        weights = torch.from_numpy(self.vaccinate(grams.numpy()))
        return Aggregation(G.combine(weights), None, grams.sum(dim=0))

    def options(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "granularity": self.granularity,
            "seed": self.seed,
            "solver": self.solver,
        }

    def state_dict(self) -> dict[str, Any]:
        if self.device_targets is not None:
            targets = self.device_targets.detach().cpu().clone()[None]
        else:
            targets = None if self.targets is None else torch.from_numpy(self.targets.copy())
        return {"rng": self.rng.bit_generator.state, "targets": targets}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        targets = state["targets"]
        self.targets = None if targets is None else targets.cpu().numpy().astype(np.float64)
        self.device_targets = None
