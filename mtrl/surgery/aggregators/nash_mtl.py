"""Nash-MTL (Navon et al., ICML 2022, "Multi-Task Learning as a Bargaining Game")."""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import numpy as np
import torch
from annotated_types import Ge
from scipy.optimize import linprog
from torch import Tensor

from mtrl.configtypes import Float, Int
from mtrl.surgery.aggregators.base import Weighting
from mtrl.surgery.aggregators.blas import single_blas_thread
from mtrl.surgery.aggregators.registry import register_aggregator

# The reference's stopping rules: ‖Ĝ α - 1/(α + 1e-10)‖ < 1e-3 on the normalised Gramian Ĝ, or
# a step ‖α_new - α‖ < 1e-6; in both cases it keeps α, not α_new.
_STOP_RESIDUAL = 1e-3
_STOP_STEP = 1e-6
_MAX_NEWTON = 50  # per centring
_MAX_CENTRINGS = 40  # t grows 20x per centring: far past any gap float64 can resolve
_NEWTON_TOL = 1e-7  # on λ²/2, λ the Newton decrement
_GAP_TOL = 1e-8  # slacks near 1e-10; much below, float64 rounding stalls Newton
_STALL_GAP = 1e-6
_T_GROWTH = 20.0
_MAX_X = 1e12  # an iterate this far out means the subproblem is unbounded


def _feasible_point(a: np.ndarray, candidates: list[np.ndarray]) -> np.ndarray | None:
    """A point x > 0 with a x > 0, or None if none exists (then no α has α_i (a α)_i >= 1)."""
    for x in candidates:
        if np.all(x > 0) and np.all(a @ x > 0):
            return x
    # max τ  s.t.  a x >= τ, x >= τ, Σx = 1
    tasks = a.shape[0]
    eye = np.eye(tasks)
    lhs = np.block([[-a, np.ones((tasks, 1))], [-eye, np.ones((tasks, 1))]])
    cost = np.zeros(tasks + 1)
    cost[-1] = -1.0
    eq = np.ones((1, tasks + 1))
    eq[0, -1] = 0.0
    result = linprog(
        cost,
        A_ub=lhs,
        b_ub=np.zeros(2 * tasks),
        A_eq=eq,
        b_eq=[1.0],
        bounds=[(0, None)] * tasks + [(None, 1.0)],
        method="highs",
    )
    if result.status != 0 or -result.fun <= 1e-12:
        return None
    return result.x[:tasks]


def _unbounded(a: np.ndarray, c: np.ndarray) -> bool:
    """Whether cᵀx is unbounded below on {x > 0: x_i (a x)_i >= 1}.

    Its recession directions are d >= 0 with a d >= 0: the objective is unbounded if one of them
    has cᵀd < 0 (never when c >= 0).
    """
    if np.all(c >= 0):
        return False
    tasks = a.shape[0]
    result = linprog(
        c / np.abs(c).max(),
        A_ub=-a,
        b_ub=np.zeros(tasks),
        A_eq=np.ones((1, tasks)),
        b_eq=[1.0],
        bounds=[(0, None)] * tasks,
        method="highs",
    )
    return result.status != 0 or result.fun < -1e-12


def solve_subproblem(a: np.ndarray, c: np.ndarray, x0: np.ndarray) -> np.ndarray | None:
    """min cᵀx  s.t.  x_i (a x)_i >= 1 (x > 0), by a barrier method from a point x0 > 0, a x0 > 0.

    The reference hands the same problem to ECOS through cvxpy (its constraints written
    -log x_i - log (a x)_i <= 0). Each constraint is a hyperbolic (rotated second-order cone)
    one, so -Σ log(x_i (a x)_i - 1) is a self-concordant barrier for the feasible set, minimised
    with t cᵀx by Newton's method for growing t. Returns None where ECOS finds no solution
    (unbounded) or where Newton's method stalls.
    """
    if _unbounded(a, c):
        return None
    tasks = a.shape[0]
    c = c / np.linalg.norm(c)
    lowest = float(np.min(x0 * (a @ x0)))
    if not (lowest > 0 and np.isfinite(lowest) and np.all(np.isfinite(x0))):
        return None  # no strictly feasible start in floating point
    x = x0 * np.sqrt(2.0 / lowest)  # every x_i (a x)_i >= 2

    def slack(x: np.ndarray) -> np.ndarray | None:
        u = a @ x
        s = x * u - 1.0
        return None if np.any(x <= 0) or np.any(u <= 0) or np.any(s <= 0) else s

    s = slack(x)
    if s is None:
        return None
    t = 1.0
    centred: np.ndarray | None = None  # the last point on the central path, close enough
    for _ in range(_MAX_CENTRINGS):
        for _ in range(_MAX_NEWTON):  # centre: minimise t cᵀx - Σ log s(x)
            u = a @ x
            d = np.diag(u) + x[:, None] * a  # rows: ∇(x_i u_i)
            grad = t * c - (u / s + a @ (x / s))
            hess = (d.T / s**2) @ d - a / s[:, None] - a / s[None, :]
            try:
                direction = -np.linalg.solve(hess, grad)
            except np.linalg.LinAlgError:
                return centred
            decrement = float(-grad @ direction)
            if decrement / 2 <= _NEWTON_TOL:
                break
            step = 1.0
            while step > 1e-10:  # backtracking, the objective's change computed directly
                trial = x + step * direction
                s_trial = slack(trial)
                if s_trial is not None:
                    change = t * step * float(c @ direction) - float(np.log(s_trial / s).sum())
                    if change <= -0.25 * step * decrement:
                        break
                step *= 0.5
            else:
                break  # rounding: the slacks no longer resolve a step
            x, s = trial, s_trial
            if np.max(x) > _MAX_X:
                return None
        else:  # no convergence (rounding: steps too small to progress): the last centred point
            return centred
        gap = 2 * tasks / t / max(1.0, abs(float(c @ x)))  # the barrier's (relative) duality gap
        if not np.isfinite(gap):
            return centred
        if gap < _GAP_TOL:
            return x
        if gap < _STALL_GAP:
            centred = x
        t *= _T_GROWTH
    return centred


def _scaling(a: np.ndarray) -> np.ndarray:
    """D's diagonal, sqrt(diag a): in y = D x the matrix D⁻¹aD⁻¹ has a unit diagonal."""
    return np.sqrt(np.maximum(np.diag(a), np.finfo(np.float64).tiny))


def _positive(x: np.ndarray | None) -> np.ndarray | None:
    return x if x is not None and np.all(np.isfinite(x)) and np.all(x > 0) else None


def feasible_scaled(a: np.ndarray, candidates: list[np.ndarray]) -> np.ndarray | None:
    """``_feasible_point`` in the coordinates of ``solve_scaled`` (feasibility is invariant)."""
    d = _scaling(a)
    y = _feasible_point(a / np.outer(d, d), [x * d for x in candidates])
    return None if y is None else _positive(y / d)


def solve_scaled(a: np.ndarray, c: np.ndarray, x0: np.ndarray) -> np.ndarray | None:
    """``solve_subproblem`` in coordinates y = D x, D = diag(sqrt(diag a)): the problem is
    invariant under that change (y_i (D⁻¹aD⁻¹ y)_i = x_i (a x)_i, cᵀx = (D⁻¹c)ᵀy), and with a
    unit diagonal it stays well scaled when the task gradients' norms differ by orders of
    magnitude (e.g. tasks whose rewards are 30x larger)."""
    d = _scaling(a)
    y = solve_subproblem(a / np.outer(d, d), c / d, x0 * d)
    return None if y is None else _positive(y / d)


def nash_mtl_alpha(gram: np.ndarray, alpha: np.ndarray, niter: int) -> np.ndarray:
    """The reference's ``solve_optimization``: α > 0 with α_i (G Gᵀ α)_i = 1, from ``alpha``.

    A sequence of convex approximations (the concave part of the objective linearised at the
    last iterate α_t): min Σ_i (Ĝ α)_i + ∇φ(α_t)ᵀ(α - α_t)/n  s.t.  α_i (G Gᵀ α)_i >= 1, with
    φ(α) = Σ_i log α_i + log (Ĝ α)_i, Ĝ = G Gᵀ / n and n = ‖G Gᵀ‖_F. It stops as the reference
    does and returns α_t (``alpha`` itself where the first subproblem is infeasible or unbounded).
    """
    norm = float(np.linalg.norm(gram))
    if not norm > 0:
        return alpha
    a = gram / norm
    root = np.sqrt(norm)  # x = α √n turns the constraints into x_i (a x)_i >= 1
    for k in range(niter):
        if np.linalg.norm(a @ alpha - 1.0 / (alpha + 1e-10)) < _STOP_RESIDUAL:
            break
        x_prev = alpha * root
        with np.errstate(divide="ignore", invalid="ignore"):
            c = root * a.sum(axis=1) + 1.0 / x_prev + a @ (1.0 / (a @ x_prev))
        if not np.all(np.isfinite(c)):
            break
        # later subproblems share the feasible set and start from the last solution
        start = feasible_scaled(a, [x_prev, np.ones_like(alpha)]) if k == 0 else x_prev
        if start is None:
            break
        x = solve_scaled(a, c, start)
        if x is None:
            break
        new = x / root
        if np.linalg.norm(new - alpha) < _STOP_STEP:
            break
        alpha = new
    return alpha


@register_aggregator("nash-mtl")
class NashMTL(Weighting):
    """Weights α > 0 of the Nash bargaining solution: (G Gᵀ α)_i = 1/α_i for every task.

    Follows the official code (AvivNavon/nash-mtl, ``methods/weight_methods.py``, as copied by
    LibMTL and torchjd): the same sequence of convex subproblems warm-started from the last α,
    the same stopping rules, and where a subproblem has no solution (infeasible: no direction
    improves every task, e.g. T > P; unbounded: a poor linearisation, e.g. at the initial α = 1
    when a task conflicts with the sum of the gradients) it keeps the last α (1 before the first
    success). The reference solves each subproblem with cvxpy and ECOS; here a barrier method
    (numpy) and, for infeasibility and unboundedness, linear programs (scipy's HiGHS). Where
    ECOS only reaches an ``inaccurate`` or iteration-limited point (nearly infeasible problems;
    gradient norms below ~1e-2, where the reference's objective is badly scaled) this solves the
    subproblem, so α differs there. The official code has no Meta-World (MT10) experiment of the
    paper; its defaults are used.

    The direction αᵀG is clipped to norm ``max_norm`` as the reference's ``clip_grad_norm_``
    clips the shared parameters' gradient: scaled by max_norm / (‖αᵀG‖ + 1e-6) where that is
    below 1 (torchjd: max_norm / ‖αᵀG‖). α scales as 1/‖G‖. T identical gradients g: at α = 1
    the reference's first stopping test (on G Gᵀ / ‖G Gᵀ‖_F = 11ᵀ/T) already holds, so a first
    call gives T g; from other weights α_i = 1/(√T ‖g‖), i.e. √T g/‖g‖; both then clipped.

    :param update_weights_every: recompute α every k-th call and reuse it in between.
    :param optim_niter: the most convex subproblems per update.
    :param max_norm: clip the direction's norm to this; 0 disables clipping.
    """

    description = "Nash bargaining weights: each task's gain times its weight is equal"
    paper = "Navon et al. 2022"
    stateful = True

    def __init__(
        self,
        update_weights_every: Annotated[Int, Ge(1)] = 1,
        optim_niter: Annotated[Int, Ge(1)] = 20,
        max_norm: Annotated[Float, Ge(0)] = 1.0,
    ) -> None:
        self.update_weights_every = int(update_weights_every)
        self.optim_niter = int(optim_niter)
        self.max_norm = float(max_norm)
        self.step = 0
        self.alpha: np.ndarray | None = None  # the last α, before clipping

    def weights(self, gram: Tensor) -> Tensor:
        gram_np = gram.numpy()
        tasks = gram_np.shape[0]
        if self.alpha is None or self.alpha.shape[0] != tasks:
            self.alpha, self.step = np.ones(tasks), 0
        if self.step % self.update_weights_every == 0:
            with warnings.catch_warnings(), single_blas_thread():
                warnings.simplefilter("ignore", RuntimeWarning)
                self.alpha = nash_mtl_alpha(gram_np, self.alpha, self.optim_niter)
        self.step += 1
        weights = self.alpha.copy()
        if self.max_norm > 0:
            norm = float(np.sqrt(max(weights @ gram_np @ weights, 0.0)))
            scale = self.max_norm / (norm + 1e-6)
            if scale < 1:
                weights *= scale
        return torch.from_numpy(weights)

    def options(self) -> dict[str, Any]:
        return {
            "update_weights_every": self.update_weights_every,
            "optim_niter": self.optim_niter,
            "max_norm": self.max_norm,
        }

    def state_dict(self) -> dict[str, Any]:
        alpha = None if self.alpha is None else self.alpha.tolist()
        return {"step": self.step, "alpha": alpha}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step = int(state["step"])
        alpha = state["alpha"]
        self.alpha = None if alpha is None else np.array(alpha, dtype=np.float64)
