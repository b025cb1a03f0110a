"""Exact solvers for the small quadratic programs that weightings pose on a T x T Gramian.

Both problems below reduce to non-negative least squares (NNLS), which the Lawson-Hanson
active-set method (``scipy.optimize.nnls``) solves exactly, in finitely many steps. It works on a
square root R of the Gramian A (RᵀR = A, from its eigendecomposition), so its least-squares
steps see cond(R) = sqrt(cond(A)), and its passive columns stay independent, so a singular A
(identical or zero task gradients, T > P) is allowed. Each answer is checked against the KKT
conditions, with BVLS as the fallback. Everything is T x T: the cost does not depend on the
number of parameters.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import lsq_linear, nnls

from mtrl.surgery.aggregators.blas import single_blas_thread

_ZERO_GRADIENT = 1e-20
"""A task whose squared gradient norm is below this times the largest counts as zero."""
_TIE_BREAK = 1e-14
"""Relative weight (to tr(A)) of the ‖v - u‖² tie-break of ``project_dual_cone``."""
_KKT_TOL = 1e-9
"""Relative tolerance of the optimality check of an NNLS answer (rounding gives ~1e-16)."""


def nonzero_tasks(gram: np.ndarray) -> np.ndarray:
    """A bool [T]: the tasks whose squared gradient norm is not negligible next to the largest."""
    diag = np.diag(gram)
    return diag > _ZERO_GRADIENT * diag.max()


def gram_root(gram: np.ndarray) -> np.ndarray:
    """R [T, T] with RᵀR = gram, from the eigendecomposition of the symmetric PSD ``gram``
    (eigenvalues below 0 are rounding noise and are clipped)."""
    vals, vecs = np.linalg.eigh(0.5 * (gram + gram.T))
    return np.sqrt(np.clip(vals, 0.0, None))[:, None] * vecs.T


def _nnls(matrix: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """argmin ‖matrix x - rhs‖ over x >= 0 (Lawson-Hanson), checked against its KKT conditions.

    scipy's NNLS was rewritten in 1.12, 1.15 and 1.16, with regressions reported in between
    (non-convergence, suboptimal points); where its answer fails the check, scipy's BVLS (an
    independent active-set method) solves the problem instead.
    """
    try:
        # Lawson-Hanson ends in about T iterations; the cap only guards degenerate cycling.
        x = nnls(matrix, rhs, maxiter=20 * matrix.shape[1] + 20)[0]
        if _nnls_optimal(matrix, rhs, x):
            return x
    except RuntimeError:
        pass
    bounds = (np.zeros(matrix.shape[1]), np.full(matrix.shape[1], np.inf))
    return lsq_linear(matrix, rhs, bounds=bounds, method="bvls", tol=1e-15).x


def _nnls_optimal(matrix: np.ndarray, rhs: np.ndarray, x: np.ndarray) -> bool:
    """x >= 0 and the gradient Kᵀ(K x - b) (K the matrix, b the rhs) is >= 0, and 0 where
    x > 0, up to rounding."""
    grad = matrix.T @ (matrix @ x - rhs)
    size = np.abs(matrix).max(initial=0.0)
    tol = _KKT_TOL * (size * size * np.abs(x).sum() + size * np.abs(rhs).sum() + 1e-300)
    return bool((x >= 0).all() and (grad >= -tol).all() and (np.abs(grad[x > 0]) <= tol).all())


def min_norm_simplex(gram: np.ndarray) -> np.ndarray:
    """The weights w on the simplex minimising wᵀ A w: the min-norm point wᵀG of the convex hull
    of the rows of G, given A = G Gᵀ. Exact (Lawson-Hanson NNLS), float64 [T].

    With RᵀR = A, x solves min_{x >= 0} ‖R x‖² + (1ᵀx - 1)². Its KKT conditions give
    (A x)_i >= 1 - 1ᵀx for every i (equality where x_i > 0) and xᵀA x = (1 - 1ᵀx) 1ᵀx, so
    1ᵀx > 0 (x = 0 is not optimal) and w = x / 1ᵀx satisfies (A w)_i >= wᵀA w with equality on
    its support: the KKT conditions of the min-norm problem, which is convex.
    A is scaled to unit mean diagonal first (w does not depend on A's scale).
    """
    tasks = gram.shape[0]
    scale = float(np.trace(gram)) / tasks
    if not scale > 0:  # every gradient is zero: any w gives the zero direction
        return np.full(tasks, 1.0 / tasks)
    with single_blas_thread():
        root = gram_root(gram / scale)
        rhs = np.zeros(tasks + 1)
        rhs[-1] = 1.0
        x = _nnls(np.vstack([root, np.ones((1, tasks))]), rhs)
    return x / x.sum()


def project_dual_cone(gram: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """For each row u of ``targets`` [K, T], the v minimising vᵀ A v subject to v >= u.

    This is the dual of projecting uᵀG onto the dual cone {d : G d >= 0} of the rows of G
    (Quinton & Rey 2024, Proposition 1): the projection is vᵀG. With x = v - u it is the NNLS
    problem min_{x >= 0} ‖R x - c‖², RᵀR = A + δI, Rᵀc = -A u, solved exactly (Lawson-Hanson).
    The tie-break δ = 1e-14 tr(A) matters only for a singular A, where v is not unique and NNLS
    could pick huge weights that cancel (harmless in float64, not once combined in float32);
    it lets task i conflict by at most δ x_i. Returns V [K, T] float64.
    """
    targets = np.atleast_2d(targets)
    steps = np.zeros_like(targets, dtype=np.float64)
    # A zero gradient constrains nothing, but its column of R would be rounding noise, which
    # NNLS (whose independence test is relative to the column) may take with a huge coefficient.
    live = nonzero_tasks(gram)
    if not live.any():
        return targets + steps
    sub = gram[np.ix_(live, live)]
    with single_blas_thread():
        vals, vecs = np.linalg.eigh(0.5 * (sub + sub.T))
        vals = np.clip(vals, 0.0, None)
        shifted = np.sqrt(vals + _TIE_BREAK * np.trace(sub))
        root = shifted[:, None] * vecs.T
        rhs = -(targets[:, live] @ vecs) * (vals / shifted)
        steps[:, live] = np.stack([_nnls(root, b) for b in rhs])
    return targets + steps
