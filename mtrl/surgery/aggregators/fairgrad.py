"""FairGrad (Ban & Ji, ICML 2024, "Fair Resource Allocation in Multi-Task Learning")."""

from __future__ import annotations

import warnings
from typing import Annotated, Any, Literal

import numpy as np
import torch
from annotated_types import Ge
from scipy.optimize import least_squares
from torch import Tensor

from mtrl.configtypes import Float
from mtrl.surgery.aggregators.base import Weighting
from mtrl.surgery.aggregators.blas import single_blas_thread
from mtrl.surgery.aggregators.device_solvers import fairgrad_sgd_device
from mtrl.surgery.aggregators.registry import register_aggregator

_SGD_STEPS, _SGD_LR, _SGD_MOMENTUM, _SGD_EPS = 20, 0.1, 0.5, 1e-8  # the official MTRL code's


def fairgrad_least_squares(gram: np.ndarray, alpha: float) -> np.ndarray:
    """w > 0 with G Gᵀ w = w^(-1/α), by scipy's least squares from 1/T, as the official code."""
    tasks = gram.shape[0]

    def residual(w: np.ndarray) -> np.ndarray:
        return gram @ w - np.power(1.0 / w, 1.0 / alpha)

    start = np.full(tasks, 1.0 / tasks)
    return least_squares(residual, start, bounds=(0, np.inf)).x


def fairgrad_sgd(gram: np.ndarray, alpha: float) -> np.ndarray:
    """The official MTRL code's solver: 20 steps of SGD (lr 0.1, momentum 0.5, gradient norm
    clipped to 1, w clamped to >= 1e-8) on ‖G Gᵀ w - (1/(w + 1e-8))^(1/α)‖² from 1/T; the best
    iterate seen (the last step's result is never evaluated, as there)."""
    tasks = gram.shape[0]
    w = np.full(tasks, 1.0 / tasks)
    velocity = np.zeros(tasks)
    best, best_value = w, np.inf
    for step in range(_SGD_STEPS):
        shifted = w + _SGD_EPS
        residual = gram @ w - np.power(1.0 / shifted, 1.0 / alpha)
        value = float(residual @ residual)
        if value < best_value:
            best, best_value = w, value
        jac_diag = np.power(shifted, -1.0 / alpha - 1.0) / alpha
        grad = 2.0 * (gram.T @ residual + jac_diag * residual)
        norm = float(np.linalg.norm(grad))
        if norm + 1e-6 > 1.0:  # torch.nn.utils.clip_grad_norm_(max_norm=1)
            grad = grad / (norm + 1e-6)
        velocity = grad if step == 0 else _SGD_MOMENTUM * velocity + grad
        w = np.maximum(w - _SGD_LR * velocity, _SGD_EPS)
    return best


@register_aggregator("fairgrad")
class FairGrad(Weighting):
    """α-fair weights: w > 0 solving G Gᵀ w = w^(-1/α), the direction wᵀG.

    The paper's MTRL code (OptMN-Lab/fairgrad, ``mtrl_files/fairgrad.py``, its Meta-World agent)
    solves the system with 20 steps of SGD on the squared residual (``solver=sgd``, the default
    here: the references disagree and mtrl follows the MTRL code); it stops far from the exact
    solution (a rough, cheap estimate). Its supervised code (``methods/weight_methods.py``; also
    LibMTL's and torchjd's ``FairGrad``) solves it with ``scipy.optimize.least_squares`` from
    w = 1/T, bounds w >= 0, on the raw Gramian (``solver=least_squares``). α = 0 is
    linear scalarisation (the paper, Section 3): the mean, as torchjd (the official code would
    divide by zero). The official supervised code also multiplies the direction by T and clips
    it to norm 1; its Meta-World agent does neither, nor does this.

    The weights are not scale-free: G -> sG scales w by s^(-2α/(1+α)). T identical gradients g
    give w_i = (T ‖g‖²)^(-α/(1+α)) (with least squares; SGD approaches it), so the direction is T w_i g, e.g. √T g/‖g‖
    for α = 1.

    :param alpha: α of α-fairness: 0 the mean, 1 proportional fairness, 2 minimum potential delay
        (the default: the value in the official MT10/MT50 run script and in all its other run
        scripts; its trainers' default is 1), larger approaches max-min fairness.
    :param solver: ``sgd`` (the official code's Meta-World agent) or ``least_squares`` (the
        official supervised code; torchjd; LibMTL: the exact solution).

    ``sgd``'s fixed steps also run as tensor ops on the gradients' device
    (``fairgrad_sgd_device``, the same weights to rounding), which an update replayed from a
    CUDA graph (``compile``) takes, as ``solver=auto`` does for other methods; elsewhere, and
    with ``least_squares`` (scipy) always, the weights are solved on the host (``placement``).
    """

    description = "alpha-fair weights: G Gᵀ w = w^(-1/alpha), fair resource allocation"
    paper = "Ban & Ji 2024"
    device_solver = True

    def __init__(
        self,
        alpha: Annotated[Float, Ge(0)] = 2.0,
        solver: Literal["sgd", "least_squares"] = "sgd",
    ) -> None:
        self.alpha = float(alpha)
        self.solver = solver

    def weights(self, gram: Tensor) -> Tensor:
        tasks = gram.shape[0]
        if self.alpha == 0:
            return torch.full((tasks,), 1.0 / tasks, dtype=torch.float64)
        solve = fairgrad_least_squares if self.solver == "least_squares" else fairgrad_sgd
        # One BLAS thread: see cagrad.py. Overflow warnings (w^(-1/α) near w = 0) are expected.
        with warnings.catch_warnings(), single_blas_thread():
            warnings.simplefilter("ignore", RuntimeWarning)
            return torch.from_numpy(np.asarray(solve(gram.numpy(), self.alpha), dtype=np.float64))

    def device_weights(self, gram: Tensor) -> Tensor:
        if self.alpha == 0:
            return torch.full_like(gram.diagonal(), 1.0 / gram.shape[0])
        return fairgrad_sgd_device(gram, self.alpha, _SGD_STEPS, _SGD_LR, _SGD_MOMENTUM, _SGD_EPS)

    @property
    def placement(self) -> str:
        """``sgd``: the device path in a captured update (``in_cuda_graph``, on any device, as
        there is no ``solver=device`` to ask for it elsewhere), else the host;
        ``least_squares``: the host."""
        return "device" if self.solver == "sgd" and self.in_cuda_graph else "host"

    def runs_on_device(self) -> bool:
        return self.solver == "sgd"

    def options(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "solver": self.solver}
