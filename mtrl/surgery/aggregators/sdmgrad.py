"""SDMGrad (Xiao et al., NeurIPS 2023, "Direction-oriented Multi-objective Learning: Simple and
Provable Stochastic Algorithms")."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
from annotated_types import Ge, Gt, Lt
from torch import Tensor

from mtrl.configtypes import Float, Int
from mtrl.surgery.aggregators.base import Solver, Weighting
from mtrl.surgery.aggregators.device_solvers import sdmgrad_weights_device
from mtrl.surgery.aggregators.registry import register_aggregator


def project_onto_simplex(v: np.ndarray) -> np.ndarray:
    """Euclidean projection onto the probability simplex (the official ``euclidean_proj_simplex``,
    Duchi et al. 2008), including its early return for a point already on the simplex."""
    if v.sum() == 1.0 and np.all(v >= 0):
        return v
    u = np.sort(v)[::-1]
    cssv = np.cumsum(u)
    rho = np.nonzero(u * np.arange(1, v.shape[0] + 1) > cssv - 1.0)[0][-1]
    theta = (cssv[rho] - 1.0) / (rho + 1)
    return np.maximum(v - theta, 0.0)


@register_aggregator("sdmgrad")
class SDMGrad(Weighting):
    """Minimise ‖g_w + λ g0‖² over w in the simplex (g0 the mean), direction (g_w + λ g0)/(1+λ).

    As the official Meta-World code (OptMN-Lab/sdmgrad, ``mtrl_files/sdmgrad.py``): the Gramian
    is divided by (mean_i √(G Gᵀ_ii + 1e-4))², then ``niter`` steps of projected SGD with
    momentum on ½ wᵀAw + λ wᵀA1/T, from the last call's w (kept across calls) with a fresh
    momentum buffer each call. The paper's stochastic estimator takes A = J₁J₂ᵀ from two
    independent mini-batches and the direction from a third; the engine gives one batch's
    gradients, so A = G Gᵀ and the direction use the same batch, as the official Meta-World code
    (its supervised code meant three batches, but ``[tensor] * 3`` aliases one buffer, so it
    also uses one). Disagreements: LibMTL and torchjd normalise by (mean_i √G Gᵀ_ii)² + 1e-8 and
    LibMTL uses lr 5; the official supervised code multiplies the direction by T and clips it
    to norm 1 (not done here, as in its Meta-World code); the objective-sampling variant
    (``sdmgrad_osK``) is not implemented. Stateful: w.

    Weights sum to 1: T identical gradients g give g.

    :param lamda: λ, the pull towards the mean gradient (0.6: the official Meta-World runs and
        class default; its supervised runs, LibMTL and torchjd use 0.3).
    :param niter: projected SGD steps per call.
    :param lr: the inner SGD's learning rate.
    :param momentum: the inner SGD's momentum.
    :param solver: where the weights are computed: ``host`` (after copying the Gramian to the
        CPU: a sync on a GPU), ``device`` (``sdmgrad_weights_device``: the same steps in tensor
        ops on the gradients' device, no sync; w kept there) or ``auto`` (the device in an
        update replayed from a CUDA graph, ``compile``; else the host).
    """

    description = "direction-oriented MGDA: min-norm in the simplex pulled towards the mean"
    paper = "Xiao et al. 2023"
    stateful = True
    device_solver = True

    def __init__(
        self,
        lamda: Annotated[Float, Ge(0)] = 0.6,
        niter: Annotated[Int, Ge(1)] = 20,
        lr: Annotated[Float, Gt(0)] = 10.0,
        momentum: Annotated[Float, Ge(0), Lt(1)] = 0.5,
        solver: Solver = "auto",
    ) -> None:
        self.lamda, self.niter = float(lamda), int(niter)
        self.lr, self.momentum = float(lr), float(momentum)
        self.solver = solver
        self.w: np.ndarray | None = None
        """The host path's w (and the device path's as restored from a checkpoint)."""
        self.device_w: Tensor | None = None
        """The device path's w, updated in place (a CUDA graph replays into it); the latest
        of the two is the one set."""

    def weights(self, gram: Tensor) -> Tensor:
        a = gram.numpy()
        tasks = a.shape[0]
        if self.w is None or self.w.shape[0] != tasks:
            self.w = np.full(tasks, 1.0 / tasks)
        a = a / np.mean(np.sqrt(np.diag(a) + 1e-4)) ** 2
        pull = self.lamda * a.mean(axis=1)
        w, velocity = self.w, np.zeros(tasks)
        for step in range(self.niter):
            grad = a @ w + pull
            velocity = grad if step == 0 else self.momentum * velocity + grad
            w = project_onto_simplex(w - self.lr * velocity)
        self.w, self.device_w = w, None
        return torch.from_numpy((w + self.lamda / tasks) / (1 + self.lamda))

    def device_weights(self, gram: Tensor) -> Tensor:
        tasks = gram.shape[0]
        if self.device_w is None or self.device_w.shape[0] != tasks:
            # in an eager update (a graph's warm-ups come first): from the host's w if it
            # has one (a restored checkpoint), else 1/T
            start = self.w if self.w is not None and self.w.shape[0] == tasks else None
            self.device_w = (
                torch.full_like(gram.diagonal(), 1.0 / tasks)
                if start is None
                else torch.from_numpy(start).to(gram.device)
            )
            self.w = None
        weights, w = sdmgrad_weights_device(
            gram, self.device_w, self.lamda, self.niter, self.lr, self.momentum
        )
        self.device_w.copy_(w)
        return weights

    def options(self) -> dict[str, Any]:
        return {
            "lamda": self.lamda,
            "niter": self.niter,
            "lr": self.lr,
            "momentum": self.momentum,
            "solver": self.solver,
        }

    def state_dict(self) -> dict[str, Any]:
        w = self.w if self.device_w is None else self.device_w.cpu().numpy()
        return {"w": None if w is None else w.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        w = state["w"]
        self.w = None if w is None else np.array(w, dtype=np.float64)
        self.device_w = None
