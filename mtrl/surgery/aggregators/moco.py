"""MoCo (Fernando et al., "Mitigating Gradient Bias in Multi-objective Learning: A Provably
Convergent Approach", ICLR 2023)."""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import torch
from annotated_types import Ge, Gt, Le
from torch import Tensor

from mtrl.configtypes import Float
from mtrl.surgery.aggregators.base import Aggregation, Aggregator, Solver, takes_device_path
from mtrl.surgery.aggregators.device_solvers import project_simplex_device
from mtrl.surgery.aggregators.registry import register_aggregator
from mtrl.surgery.taskgrads import TaskGradients


def project_simplex(v: np.ndarray) -> np.ndarray:
    """The Euclidean projection of v onto the probability simplex (sort-based, as in the official
    code's ``projection_simplex_sort``)."""
    u = np.sort(v)[::-1]
    css = np.cumsum(u) - 1.0
    ind = np.arange(1, v.shape[0] + 1)
    k = np.nonzero(u - css / ind > 0)[0][-1]
    return np.maximum(v - css[k] / (k + 1), 0.0)


@register_aggregator("moco")
class MoCo(Aggregator):
    """Track each task's gradient with a running average Y and follow λᵀY, λ updated on the simplex.

    At update k = 1, 2, ... with task gradients G [T, P] (Y starts at 0, λ at 1/T)::

        Y <- Y - beta_k (Y - G)                         beta_k = beta / k^beta_sigma
        λ <- Π_Δ(λ - gamma_k (Y Yᵀ + rho I) λ)         gamma_k = gamma / k^gamma_sigma
        direction = λᵀ Y

    with Π_Δ the Euclidean projection onto the simplex: a projected gradient step on
    ½‖λᵀY‖² + ½ rho‖λ‖², the MGDA subproblem on the tracked gradients (the paper's update). The
    schedule, the defaults and the sort-based projection follow the official code
    (github.com/heshandevaka/MoCo, ``LibMTL/weighting/Tracking.py``, its Office experiments).
    Where references disagree: that file steps on 2 Y Yᵀ λ (gamma twice ours) without rho, while
    LibMTL's MoCo steps on (Y Yᵀ + rho I) λ as here; LibMTL and the official Cityscapes script
    replace the projection by a softmax; LibMTL (default beta = 0.5) rescales each task
    gradient to norm = its loss first, which needs the losses and is not done here.

    Y starts at 0, so identical task gradients g give c_k g with c_k = 1 - Π_{i<=k}(1 - beta_i)
    (c_1 = beta; λ stays uniform). T = 1 returns that task's gradient (the rule of every
    aggregator) and leaves the state alone; the method itself would return its running average
    there. Y is as large as G (its blocks, on G's device): the extra memory of the method.

    :param beta: the rate of each task's running average at update 1 (0.1 in the official code,
        0.5 in LibMTL).
    :param beta_sigma: that rate decays as beta / k^beta_sigma at update k (0: constant).
    :param gamma: the step size of the task weights' projected step at update 1.
    :param gamma_sigma: that step size decays as gamma / k^gamma_sigma (0: constant).
    :param rho: the ℓ2 regularisation of the task weights' subproblem (0 in the official code).
    :param solver: where λ's step is computed: ``host`` (after copying the tracked Gramian to
        the CPU: a sync on a GPU), ``device`` (tensor ops on the gradients' device, no sync;
        λ and the step count kept there, updated in place) or ``auto`` (the device in an
        update replayed from a CUDA graph, ``compile``; else the host). On the device path a
        non-finite gradient is refused before it enters Y only where the caller does not check
        later (with deferred checks it is named at the next check, and the run stops there).
    """

    description = (
        "MGDA weights, one projected step per update, on running averages of the gradients"
    )
    paper = "Fernando et al. 2023"
    stateful = True  # Y, λ and the step count
    device_solver = True

    def __init__(
        self,
        beta: Annotated[Float, Gt(0), Le(1)] = 0.1,
        beta_sigma: Annotated[Float, Ge(0)] = 0.5,
        gamma: Annotated[Float, Ge(0)] = 0.1,
        gamma_sigma: Annotated[Float, Ge(0)] = 0.5,
        rho: Annotated[Float, Ge(0)] = 0.0,
        solver: Solver = "auto",
    ) -> None:
        self.beta, self.beta_sigma = beta, beta_sigma
        self.gamma, self.gamma_sigma = gamma, gamma_sigma
        self.rho = rho
        self.solver = solver
        self.step = 0
        self.y: list[Tensor] | None = None
        self.lam: Tensor | None = None  # float64, CPU
        self.device_state: tuple[Tensor, Tensor] | None = None
        """The device path's step count and λ (float64 on G's device), updated in place (a
        CUDA graph replays into them); where set, they are the latest."""

    def runs_on_device(self) -> bool:
        return self.solver != "host"

    def _use_device(self, G: TaskGradients) -> bool:
        """Whether this update takes the device path (``takes_device_path``)."""
        return takes_device_path(self.solver, self.in_cuda_graph, G.device)

    def _start(self, G: TaskGradients) -> None:
        """Y = 0 shaped like G's blocks and λ uniform; a matching loaded state moves to G."""
        if self.y is not None:
            shapes = [tuple(y.shape) for y in self.y]
            if shapes != [tuple(b.shape) for b in G.blocks]:
                raise ValueError(
                    f"MoCo tracks gradient blocks {shapes}, got {[tuple(b.shape) for b in G.blocks]}"
                )
            if self.y[0].device != G.device or self.y[0].dtype != G.dtype:
                self.y = [y.to(device=G.device, dtype=G.dtype) for y in self.y]
            return
        self.y = [torch.zeros_like(b) for b in G.blocks]
        self.lam = torch.full((G.num_tasks,), 1.0 / G.num_tasks, dtype=torch.float64)

    def _aggregate(self, G: TaskGradients) -> Aggregation:
        on_device = self._use_device(G)
        # A NaN/inf in G would stay in Y for good: refuse it before the in-place update (a
        # sync; the device path leaves it to a caller that checks later).
        if (
            self.check_finite
            and (self.check_direction or not on_device)
            and not bool(torch.stack([b.sum() for b in G.blocks]).isfinite().all())
        ):
            self.raise_non_finite(G)
        self._start(G)
        if on_device:
            return self._device_step(G)
        self._state_to_host()
        assert self.y is not None and self.lam is not None
        self.step += 1
        beta_k = self.beta / self.step**self.beta_sigma
        gamma_k = self.gamma / self.step**self.gamma_sigma
        for y, g in zip(self.y, G.blocks, strict=True):
            y.lerp_(g, beta_k)  # y - beta_k (y - g)
        tracked = TaskGradients(self.y)
        gram = tracked.gramian().numpy()
        lam = self.lam.numpy()
        step = gram @ lam + self.rho * lam
        self.lam = torch.from_numpy(project_simplex(lam - gamma_k * step))
        return Aggregation(tracked.combine(self.lam))

    def _device_step(self, G: TaskGradients) -> Aggregation:
        """The host path's update in tensor ops on G's device: the schedule from a step count
        there, the tracked Gramian there, the projection by ``project_simplex_device``."""
        assert self.y is not None
        if self.device_state is None or self.device_state[1].device != G.device:
            # in an eager update (a graph's warm-ups come first): the host's state (a restored
            # checkpoint's) copied there, or a new one made there
            assert self.lam is not None
            count = torch.full((), float(self.step), dtype=torch.float64, device=G.device)
            lam = (
                self.lam.to(G.device)
                if self.step
                else torch.full((G.num_tasks,), 1 / G.num_tasks, dtype=count.dtype, device=G.device)
            )
            self.device_state = (count, lam)
        count, lam = self.device_state
        count.add_(1.0)
        beta_k = (self.beta * count.pow(-self.beta_sigma)).to(G.dtype)
        gamma_k = self.gamma * count.pow(-self.gamma_sigma)
        for y, g in zip(self.y, G.blocks, strict=True):
            y.lerp_(g, beta_k)
        tracked = TaskGradients(self.y)
        step = tracked.device_gramian() @ lam + self.rho * lam
        lam.copy_(project_simplex_device(lam - gamma_k * step))
        return Aggregation(tracked.combine(lam))

    def _state_to_host(self) -> None:
        """The device path's step count and λ back as the host path's (a switch of paths)."""
        if self.device_state is not None:
            count, lam = self.device_state
            self.step, self.lam = int(count), lam.to("cpu", torch.float64, copy=True)
            self.device_state = None

    def options(self) -> dict[str, Any]:
        return {
            "beta": self.beta,
            "beta_sigma": self.beta_sigma,
            "gamma": self.gamma,
            "gamma_sigma": self.gamma_sigma,
            "rho": self.rho,
            "solver": self.solver,
        }

    def state_dict(self) -> dict[str, Any]:
        """The live state (Y is not copied: save it before the next update, or copy it)."""
        if self.device_state is not None:
            count, lam = self.device_state
            return {"step": int(count), "y": self.y, "lam": lam.to("cpu", copy=True)}
        return {"step": self.step, "y": self.y, "lam": self.lam}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.device_state = None
        self.step = int(state["step"])
        self.y = None if state["y"] is None else [y.clone() for y in state["y"]]
        self.lam = (
            None if state["lam"] is None else state["lam"].to("cpu", torch.float64, copy=True)
        )
