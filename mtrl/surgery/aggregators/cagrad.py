"""CAGrad (Liu et al., 2021, "Conflict-Averse Gradient Descent"), as in the official code."""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import numpy as np
import torch
from annotated_types import Ge, Gt, Le
from scipy.optimize import minimize
from torch import Tensor

from mtrl.configtypes import Float, Int
from mtrl.surgery.aggregators.base import Solver, Weighting
from mtrl.surgery.aggregators.blas import single_blas_thread
from mtrl.surgery.aggregators.device_solvers import CAGRAD_ITERS, cagrad_weights_device
from mtrl.surgery.aggregators.registry import register_aggregator

_EPS = 1e-8  # device_solvers.EPS


def cagrad_dual(gram: np.ndarray, c: float, tol: float, max_iter: int) -> np.ndarray:
    """Solve CAGrad's dual over the simplex: min_w  wᵀ A b + c‖g0‖ sqrt(wᵀ A w), b = 1/T.

    ``gram`` should be normalised (the minimiser does not depend on A's scale).
    """
    tasks = gram.shape[0]
    b = np.full(tasks, 1.0 / tasks)
    scale = c * np.sqrt(gram.mean() + _EPS) + _EPS
    ab = gram @ b

    def objective(w: np.ndarray) -> float:
        return float(w @ ab + scale * np.sqrt(w @ gram @ w + _EPS))

    def gradient(w: np.ndarray) -> np.ndarray:
        return ab + scale * (gram @ w) / np.sqrt(w @ gram @ w + _EPS)

    with warnings.catch_warnings(), single_blas_thread():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = minimize(
            objective,
            b,
            jac=gradient,
            method="SLSQP",
            bounds=[(0.0, 1.0)] * tasks,
            constraints={"type": "eq", "fun": lambda w: 1.0 - w.sum(), "jac": lambda w: -b * tasks},
            options={"ftol": tol, "maxiter": max_iter},
        )
    w = np.clip(result.x, 0.0, None)
    return w / w.sum()


@register_aggregator("cagrad")
class CAGrad(Weighting):
    """Maximise the worst task's improvement within a ball of radius c‖g0‖ around the mean.

    The direction is ``g0 + (c‖g0‖ / ‖g_w‖) g_w`` with g0 the mean gradient and g_w = wᵀG the
    solution of the dual on the Gramian; ``c=0`` gives the mean exactly.

    :param c: the ball's radius relative to ‖g0‖ (0.4 official default; 0.9 on MT10 and 0.5 on
        MT50 in the paper).
    :param rescale: 0 none, 1 divide by 1+c² (official default), 2 divide by 1+c.
    :param tol: the host solver's tolerance (SLSQP ``ftol`` on the normalised problem).
    :param max_iter: the host solver's iteration cap.
    :param solver: where the dual is solved: ``host`` (SLSQP, after copying the Gramian to the
        CPU: a sync on a GPU), ``device`` (a fixed number of interior-point steps in tensor ops
        on the gradients' device, no sync, capturable in a CUDA graph) or ``auto`` (the device
        in an update replayed from a CUDA graph, ``compile``; else the host, faster there).
    :param device_iters: interior-point steps of the device solver (from 10 the test problems
        were solved exactly).

    The device path (``cagrad_weights_device``) solves the dual through a batch of quadratic
    programs; ``last_dual`` (the dual weights, for inspection) is set by the host path only.
    """

    description = "best worst-task improvement within a ball around the mean gradient"
    paper = "Liu et al. 2021"
    device_solver = True
    compile_auto = True  # compiled on an H200: 3.76 vs 5.58 ms per update at T = 10
    fusable = True
    fused_auto = True  # fused and compiled on an H200: 2.85 vs 3.56 ms compiled at T = 10

    def __init__(
        self,
        c: Annotated[Float, Ge(0)] = 0.4,
        rescale: Annotated[Int, Ge(0), Le(2)] = 1,
        tol: Annotated[Float, Gt(0)] = 1e-10,
        max_iter: Annotated[Int, Ge(1)] = 200,
        solver: Solver = "auto",
        device_iters: Annotated[Int, Ge(1)] = CAGRAD_ITERS,
    ):
        self.c, self.rescale, self.tol, self.max_iter = float(c), int(rescale), tol, max_iter
        self.solver, self.device_iters = solver, int(device_iters)
        self.last_dual: np.ndarray | None = None

    def weights(self, gram: Tensor) -> Tensor:
        tasks = gram.shape[0]
        mean_weights = np.full(tasks, 1.0 / tasks)
        scale = float(gram.diagonal().mean())
        if self.c == 0 or scale <= 0 or not np.isfinite(scale):
            weights = mean_weights
        else:
            a = gram.numpy() / scale
            w = cagrad_dual(a, self.c, self.tol, self.max_iter)
            self.last_dual = w
            g0_norm = np.sqrt(max(a.mean(), 0.0) + _EPS)
            gw_norm = np.sqrt(max(w @ a @ w, 0.0))
            lam = (self.c * g0_norm + _EPS) / (gw_norm + _EPS)
            weights = mean_weights + lam * w
        if self.rescale == 1:
            weights = weights / (1 + self.c**2)
        elif self.rescale == 2:
            weights = weights / (1 + self.c)
        return torch.from_numpy(np.asarray(weights, dtype=np.float64))

    def device_weights(self, gram: Tensor) -> Tensor:
        return cagrad_weights_device(
            gram, self.c, self.device_iters, self.rescale, fused=self.fused_solver
        )

    def options(self) -> dict[str, Any]:
        return {
            "c": self.c,
            "rescale": self.rescale,
            "tol": self.tol,
            "max_iter": self.max_iter,
            "solver": self.solver,
            "device_iters": self.device_iters,
        }
