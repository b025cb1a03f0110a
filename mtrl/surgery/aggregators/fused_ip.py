"""CAGrad's, MGDA's, UPGrad's and DualProj's device solvers as whole Triton kernels
(``fused_solvers``): a CAGrad solve in two launches, the others in one; and the Jacobi
rotations of IMTL-G, ConFIG and Aligned-MTL as another (``jacobi_eigh_fused``: the rounds of
``device_solvers.jacobi_eigh``, 12 small kernels each, in one launch; not yet run on a GPU,
so only ``fused_solvers=true`` takes it).

``device_solvers._interior_point`` launches about 44 kernels per step (9 compiled) and
cuSOLVER/cuBLAS calls besides; replayed from a CUDA graph each costs about 2 us, which is
what keeps CAGrad and MGDA at 2.3-2.8x a plain update on a GPU even compiled (BENCHMARKS.md).
Here every step of a problem runs in one program, which holds its T x T matrix in registers
and inverts each step's Newton matrix by the sweep operator (symmetric Gauss-Jordan: no
pivoting, which a positive definite matrix does not need), so the steps are one launch
whatever their number (``_interior_point_steps``). CAGrad's first kernel runs one program
per κ of its grid; its second, one program, does the rest of ``cagrad_weights_device`` (the
grid cell, κ* in it, the exact steps on the supports, the weights). MGDA's kernel is one
program: the steps, the four support candidates of ``mgda_weights_device`` and the choice.
UPGrad's and DualProj's runs one program per projection (``dual_cone_weights_device``: the
steps over the orthant, two support candidates). (A first form fused only the steps and the
support steps' linear solves, leaving some 175 small kernels per CAGrad solve around them.)

The formulas are those of ``device_solvers`` (the same start, predictor, corrector and step
lengths; the same grid, cell, candidates and tolerances). The matrices are symmetric, so every
product with a vector sums down the tile's columns, which in Triton's layout of the tile is
one exchange between threads where a sum along the rows is a chain of them; and each step
divides by x and z once, then multiplies (a float64 division is a long instruction sequence
on a GPU). Constants that are not exact in float32 enter as float64 scalars (``_f64``). The
tests run these kernels in Triton's interpreter on the CPU (``TRITON_INTERPRET=1``) and
compiled on a GPU, against the torch solvers and the host's, and compile them for sm_90 on
any machine to check that no spill code runs at a step or a pivot
(``benchmarks/fused_kernels.py --check``). On a GPU the kernels' fused multiply-adds let the
iterates converge past where the torch solver's rounding stalls them (an inactive weight
1e-23 against 1e-14 after 12 steps), so the two agree in the objective (1e-9), not bit for
bit. An earlier orthant kernel
for UPGrad and DualProj gave directions 0.36 (relative) off the exact ones on an H200 where
T > P, which the interpreter did not reproduce. A likely cause: there the support steps'
systems are near singular, Gauss-Jordan's inverse of them is inexact (as found since for
duplicate tasks), and an inexact solution with x >= 0 passed the optimality check, which
does not look at the system's residual. So every support solve is now refined against its
matrix, and the orthant kernel also checks the residual; and a captured update first checks
the kernels against the torch solver on its own device (``solver_check``) and runs the torch
solver where they disagree. Needs the ``triton`` package (it comes with torch's CUDA builds;
``mtrl-bench[fused]`` installs it for the CPU tests).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch import Tensor

from mtrl.surgery.aggregators.device_solvers import (
    _MGDA_KKT_TOL,
    _REG,
    _TAU,
    _ZERO_GRADIENT,
    EPS,
)

TAU = _TAU
"""The fraction of the step to the boundary an interior step takes."""


@triton.jit
def _step_to_boundary(dv, reciprocal, live, minus_fraction):
    """min(1, fraction x the largest α keeping v + α dv >= 0) over the live entries, given
    1/v and ``minus_fraction`` = -fraction (a float64 scalar)."""
    most_negative = tl.min(tl.where(live, dv * reciprocal, 0.0), axis=0)
    return minus_fraction / tl.minimum(most_negative, minus_fraction)


@triton.jit
def _load_matrix(ptr, k, tasks, idx):
    """Program k's T x T float64 matrix as a [BLOCK, BLOCK] tile, zero outside T x T."""
    live = idx < tasks
    return tl.load(
        ptr + k * tasks * tasks + idx[:, None] * tasks + idx[None, :],
        mask=live[:, None] & live[None, :],
        other=0.0,
    ).to(tl.float64)


@triton.jit
def _sweep(matrix, tasks, idx):
    """Minus the inverse of a positive definite ``matrix`` [BLOCK, BLOCK] (its first ``tasks``
    rows and columns; the rest the identity, left as it is) by sweeping every pivot, and the
    smallest pivot (positive exactly where a Cholesky factorisation succeeds, up to rounding;
    NaN if any is), a scalar.

    Each pivot's column is gathered (one exchange between threads, where a masked sum took a
    chain of them) and the pivot inverted once for the whole tile: compiled for sm_90 a pivot
    is about a third of the instructions it was with a masked sum and divisions
    (``benchmarks/fused_kernels.py``, BENCHMARKS.md)."""
    rows = idx[:, None]
    cols = idx[None, :]
    smallest = tl.full([], float("inf"), tl.float64)
    for j in range(tasks):
        col = tl.reshape(tl.gather(matrix, tl.zeros_like(rows) + j, axis=1), idx.shape)
        pivot = tl.sum(tl.where(idx == j, col, 0.0), axis=0)
        smallest = tl.minimum(smallest, pivot, propagate_nan=tl.PropagateNan.ALL)
        scale = 1.0 / pivot
        at_row, at_col = rows == j, cols == j
        edge = tl.where(at_col, col[:, None], col[None, :]) * scale
        swept = matrix - col[:, None] * (col * scale)[None, :]
        matrix = tl.where(at_row & at_col, -scale, tl.where(at_row | at_col, edge, swept))
    return matrix, smallest


@triton.jit
def _interior_point_steps(
    hessian, reg, lin, tasks, iters, idx, FRACTION: tl.constexpr, SIMPLEX: tl.constexpr
):
    """``iters`` Mehrotra steps of ``min ½ xᵀH x + pᵀx`` over x >= 0, with ``Σx = 1`` if
    ``SIMPLEX`` (``device_solvers._interior_point``: the same start, x = 1/T or 1 and z = 1,
    predictor, corrector and step lengths), for one program's H = ``hessian`` + ``reg`` I
    (``hessian`` [BLOCK, BLOCK] zero outside T x T; ``reg`` a float64 scalar, apart so that a
    caller's A need not be held twice) and ``lin`` = p [BLOCK]: the minimiser x and the dual
    slacks z [BLOCK] (padding entries 1)."""
    live = idx < tasks
    eye = idx[:, None] == idx[None, :]
    one = tl.full(idx.shape, 1.0, tl.float64)
    count = tl.sum(tl.where(live, one, 0.0), axis=0)
    minus_one = -tl.max(one, axis=0)  # float64 scalars (a float literal would be float32)
    minus_fraction = tl.max(tl.full(idx.shape, -FRACTION, tl.float64), axis=0)
    x = tl.where(live, one / count, one) if SIMPLEX else one
    z = one
    for _ in range(iters):
        # divisions are the costliest arithmetic here: 1/x and 1/z once a step
        rx = one / x
        rz = one / z
        grad = tl.where(live, tl.sum(hessian * x[:, None], axis=0) + reg * x + lin, 0.0)
        # minus the inverse of M = H + Z/X (padding: the identity)
        scaled = hessian + tl.where(eye, tl.where(live, z * rx + reg, 1.0)[:, None], 0.0)
        inv, _ = _sweep(scaled, tasks, idx)
        xz = tl.where(live, x * z, 0.0)
        mu = tl.sum(xz, axis=0) / count
        # predictor (affine scaling): the right side is the gradient (Hx + p + ν)
        if SIMPLEX:  # Δν from 1ᵀΔx = 0
            v = -tl.sum(tl.where(live[:, None], inv, 0.0), axis=0)  # M⁻¹ 1
            v_sum = tl.sum(tl.where(live, v, 0.0), axis=0)
        u = -tl.sum(inv * grad[:, None], axis=0)  # M⁻¹ grad
        if SIMPLEX:
            dx = tl.where(live, (tl.sum(tl.where(live, u, 0.0), axis=0) / v_sum) * v - u, 0.0)
        else:
            dx = tl.where(live, -u, 0.0)
        dz = -(xz + z * dx) * rx
        alpha_x = _step_to_boundary(dx, rx, live, minus_one)
        alpha_z = _step_to_boundary(dz, rz, live, minus_one)
        affine = tl.where(live, (x + alpha_x * dx) * (z + alpha_z * dz), 0.0)
        ratio = tl.sum(affine, axis=0) / count / mu
        sigma_mu = ratio * ratio * ratio * mu
        # corrector: centring plus the second-order term of the predictor
        comp = tl.where(live, xz + dx * dz - sigma_mu, 0.0)
        u = -tl.sum(inv * tl.where(live, grad - z + comp * rx, 0.0)[:, None], axis=0)
        if SIMPLEX:
            t = tl.sum(tl.where(live, u, 0.0), axis=0) / v_sum  # -Δν
            dx = tl.where(live, t * v - u, 0.0)
        else:
            dx = tl.where(live, -u, 0.0)
        dz = -(comp + z * dx) * rx
        alpha_x = _step_to_boundary(dx, rx, live, minus_fraction)
        alpha_z = _step_to_boundary(dz, rz, live, minus_fraction)
        x = x + alpha_x * dx
        z = z + alpha_z * dz
        if SIMPLEX:
            lin = lin - alpha_z * t
    return x, z


@triton.jit
def _simplex_kernel(
    h_ptr, p_ptr, x_ptr, z_ptr, tasks, iters, BLOCK: tl.constexpr, FRACTION: tl.constexpr
):
    """One program per problem: ``_interior_point_steps`` over the simplex on problem k's H
    and p."""
    k = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, BLOCK)
    live = idx < tasks
    hessian = _load_matrix(h_ptr, k, tasks, idx)
    lin = tl.load(p_ptr + k * tasks + idx, mask=live, other=0.0).to(tl.float64)
    zero = tl.zeros([], tl.float64)
    x, z = _interior_point_steps(hessian, zero, lin, tasks, iters, idx, FRACTION, True)
    tl.store(x_ptr + k * tasks + idx, x, mask=live)
    tl.store(z_ptr + k * tasks + idx, z, mask=live)


def simplex_qp_fused(hessians: Tensor, linear: Tensor, iters: int) -> tuple[Tensor, Tensor]:
    """``device_solvers.simplex_qp_device`` in one kernel launch: the minimisers w and dual
    slacks z [K, T] of ``½ wᵀH_k w + p_kᵀw`` over the simplex, for positive definite
    ``hessians`` [K, T, T] (or [1, T, T], shared) and ``linear`` [K, T], float64."""
    problems, tasks = linear.shape
    hessians = hessians.expand(problems, tasks, tasks).contiguous()
    linear = linear.contiguous()
    x, z = torch.empty_like(linear), torch.empty_like(linear)
    block = _block(tasks)
    _simplex_kernel[(problems,)](
        hessians, linear, x, z, tasks, iters, BLOCK=block, FRACTION=TAU, num_warps=_warps(block)
    )
    return x, z


# --- whole solves: CAGrad in two launches, MGDA in one --------------------------------------

_EPS = tl.constexpr(EPS)
_REG_DIAGONAL = tl.constexpr(_REG)
_KKT = tl.constexpr(_MGDA_KKT_TOL)
_CAGRAD_FEASIBLE = tl.constexpr(1e-9)  # _exact_on_supports's tolerance
_LOW = tl.constexpr(0.5 * math.log(EPS) + math.log(0.5))
_LOG2 = tl.constexpr(math.log(2.0))


@triton.jit
def _f64(value: tl.constexpr):
    """``value`` as a float64 scalar: a float literal in arithmetic may be rounded to float32."""
    return tl.full([], value, tl.float64)


@triton.jit
def _times(matrix, v):
    """``matrix @ v`` for a symmetric ``matrix``: summed down the columns (one exchange)."""
    return tl.sum(matrix * v[:, None], axis=0)


@triton.jit
def _all(flags, live):
    """Whether ``flags`` holds at every live entry (a scalar)."""
    return tl.sum(tl.where(live & ~flags, 1, 0), axis=0) == 0


@triton.jit
def _finite(v):
    """Where ``v`` is neither NaN nor infinite."""
    return (v == v) & (tl.abs(v) < float("inf"))


@triton.jit
def _normalised_gramian(g_ptr, tasks, idx):
    """The Gramian over its mean diagonal (zero where that mean is not positive and finite,
    so no NaN follows), whether it was, its diagonal and T (a float64 scalar)."""
    live = idx < tasks
    eye = idx[:, None] == idx[None, :]
    gram = _load_matrix(g_ptr, 0, tasks, idx)
    count = tl.sum(tl.where(live, 1.0, 0.0), axis=0).to(tl.float64)
    scale = tl.sum(tl.sum(tl.where(eye, gram, 0.0), axis=0), axis=0) / count
    valid = (scale > 0) & (scale < float("inf"))
    a = tl.where(valid, gram / tl.where(valid, scale, 1.0), 0.0)
    return a, valid, tl.sum(tl.where(eye, a, 0.0), axis=0), count


@triton.jit
def _cagrad_setup(g_ptr, C: tl.constexpr, tasks, idx):
    """``cagrad_dual_device``'s quantities from the Gramian: A, whether it was valid, Ab,
    s = c sqrt(mean(A) + eps) + eps, the log-range of κ and A's largest diagonal entry."""
    a, valid, diag, count = _normalised_gramian(g_ptr, tasks, idx)
    c = _f64(C)
    ab = tl.sum(a, axis=0) / count  # A is symmetric: its row means
    mean = tl.sum(tl.sum(a, axis=0), axis=0) / (count * count)
    s = c * tl.sqrt(tl.maximum(mean, 0.0) + _f64(_EPS)) + _f64(_EPS)
    log_s = tl.log(s)
    largest = tl.max(diag, axis=0)
    low = _f64(_LOW) - log_s
    high = 0.5 * tl.log(tl.maximum(largest, 0.0) + _f64(_EPS)) + _f64(_LOG2) - log_s
    return a, valid, ab, s, low, high, largest, mean, c


@triton.jit
def _kappa(low, high, k, points):
    """The k-th of ``points`` log-spaced values of κ from exp(low) to exp(high)."""
    return tl.exp(low + (k.to(tl.float64) / (points - 1)) * (high - low))


@triton.jit
def _cagrad_steps_kernel(
    g_ptr, x_ptr, z_ptr, below_ptr, tasks, points, iters,
    C: tl.constexpr, BLOCK: tl.constexpr, FRACTION: tl.constexpr,
):  # fmt: skip
    """One program per κ of CAGrad's grid: the simplex QP of ``cagrad_dual_device`` for its
    κ (x, z stored), and whether κ s < sqrt(‖x(κ)‖² + eps) there."""
    k = tl.program_id(0)
    idx = tl.arange(0, BLOCK)
    live = idx < tasks
    a, _, ab, s, low, high, _, _, _ = _cagrad_setup(g_ptr, C, tasks, idx)
    kappa = _kappa(low, high, k, points)
    theta = kappa / (1 + kappa)
    lin = tl.where(live, theta * ab, 0.0)
    reg = _f64(_REG_DIAGONAL)
    x, z = _interior_point_steps((1 - theta) * a, reg, lin, tasks, iters, idx, FRACTION, True)
    x = tl.where(live, x, 0.0)
    row = k.to(tl.int64) * tasks + idx
    tl.store(x_ptr + row, x, mask=live)
    tl.store(z_ptr + row, z, mask=live)
    q = tl.sum(_times(a, x) * x, axis=0)
    tl.store(below_ptr + k, (kappa * s < tl.sqrt(tl.maximum(q, 0.0) + _f64(_EPS))).to(tl.int32))


@triton.jit
def _support_system(a, m, reg, tasks, idx, ONES: tl.constexpr):
    """Minus the inverse of a support step's matrix M = (A + 11ᵀ) mmᵀ + diag(1 - m + reg m),
    without the 11ᵀ unless ``ONES`` (m the support's 0/1 vector, ``reg`` 0 or the
    regulariser; off the support the identity), and whether its sweep succeeded, like a
    Cholesky factorisation."""
    eye = idx[:, None] == idx[None, :]
    mm = m[:, None] * m[None, :]
    matrix = a * mm
    if ONES:  # not (A + 1) mmᵀ: no A + 1 shared with another candidate (and kept: registers)
        matrix = matrix + mm
    matrix = matrix + tl.where(eye, (1 - m + reg * m)[:, None], 0.0)
    inv, smallest = _sweep(matrix, tasks, idx)
    return inv, (smallest > 0) & (smallest < float("inf"))


@triton.jit
def _support_times(a, m, reg, x, ONES: tl.constexpr):
    """M x for ``_support_system``'s M, from A and m as products with vectors (no tile)."""
    mx = m * x
    ax = _times(a, mx)
    if ONES:
        ax = ax + tl.sum(mx, axis=0)
    return m * ax + (1 - m + reg * m) * x


@triton.jit
def _support_solve(inv, a, m, reg, rhs, ONES: tl.constexpr):
    """x with M x = ``rhs`` (``_support_system``'s M), from minus its inverse ``inv`` and two
    steps of iterative refinement against M. Gauss-Jordan's inverse is less accurate than a
    Cholesky solve where the matrix is near singular (duplicate tasks on the support,
    regularised: the duplicates' total weight 7e-4 off on a test problem); refined, it
    agrees with Cholesky's to 1e-12 there."""
    x = -_times(inv, rhs)
    for _ in tl.static_range(2):
        x = x - _times(inv, rhs - _support_times(a, m, reg, x, ONES))
    return x


@triton.jit
def _cagrad_on_support(a, ab, s, largest, support, reg, tasks, idx):
    """``_exact_on_supports`` for one support, with ``reg`` (0 or the regulariser) on its
    system's diagonal: the dual's solution if it is supported there, and whether it is
    optimal."""
    live = idx < tasks
    m = tl.where(support, 1.0, 0.0).to(tl.float64)
    inv, factored = _support_system(a, m, reg, tasks, idx, True)
    u = _support_solve(inv, a, m, reg, m, True)
    y = _support_solve(inv, a, m, reg, -ab * m, True)
    u_sum = tl.sum(tl.where(live, u, 0.0), axis=0)
    y_sum = tl.sum(tl.where(live, y, 0.0), axis=0)
    p = u / u_sum
    r = y - (y_sum / u_sum) * u  # w = p + κ r
    nu_p = 1 - 1 / u_sum
    nu_r = y_sum / u_sum  # ν = ν_p + κ ν_r
    ap = tl.where(live, _times(a, p), 0.0)
    ar = tl.where(live, _times(a, r), 0.0)
    qa = s * s - tl.sum(ar * r, axis=0)
    qb = -2 * tl.sum(ap * r, axis=0)
    qc = -tl.sum(ap * p, axis=0) - _f64(_EPS)
    kappa = 2 * qc / (-qb - tl.sqrt(tl.maximum(qb * qb - 4 * qa * qc, 0.0)))
    w = tl.where(live, p + kappa * r, 0.0)
    reduced = ap + kappa * (ar + ab) + nu_p + kappa * nu_r
    tol = _f64(_CAGRAD_FEASIBLE)
    feasible = (w >= -tol) & (support | (reduced >= -tol * (largest * (1 + kappa))))
    optimal = _all(feasible & _finite(w), live) & (kappa > 0) & factored
    return w, optimal


@triton.jit
def _cagrad_tail_kernel(
    g_ptr, x_ptr, z_ptr, below_ptr, out_ptr, tasks, points,
    C: tl.constexpr, BLOCK: tl.constexpr, POINTS: tl.constexpr, DIVISOR: tl.constexpr,
):  # fmt: skip
    """One program: ``cagrad_dual_device`` after the QPs (the grid cell where the sign
    changes, κ* inside it, the exact steps on the supports of its ends) and
    ``cagrad_weights_device``'s weights from the dual's solution."""
    idx = tl.arange(0, BLOCK)
    live = idx < tasks
    a, valid, ab, s, low, high, largest, mean, c = _cagrad_setup(g_ptr, C, tasks, idx)
    grid = tl.arange(0, POINTS)
    below = tl.sum(tl.load(below_ptr + grid, mask=grid < points, other=0), axis=0)
    first = tl.minimum(tl.maximum(below - 1, 0), points - 2)
    k0, k1 = _kappa(low, high, first, points), _kappa(low, high, first + 1, points)
    row0 = first.to(tl.int64) * tasks + idx
    w0 = tl.load(x_ptr + row0, mask=live, other=0.0)
    w1 = tl.load(x_ptr + row0 + tasks, mask=live, other=0.0)
    z0 = tl.load(z_ptr + row0, mask=live, other=0.0)
    z1 = tl.load(z_ptr + row0 + tasks, mask=live, other=0.0)
    support0, support1 = live & (w0 > z0), live & (w1 > z1)
    # on the cell x(κ) is linear: (κ s)² = ‖x‖² + eps is quadratic in the position t in [0, 1]
    dk, dw = k1 - k0, w1 - w0
    a_dw = _times(a, dw)
    s2 = s * s
    qa = dk * dk * s2 - tl.sum(dw * a_dw, axis=0)
    qb = 2 * (k0 * dk * s2 - tl.sum(w0 * a_dw, axis=0))
    qc = k0 * k0 * s2 - tl.sum(w0 * _times(a, w0), axis=0) - _f64(_EPS)
    root = 2 * qc / (-qb - tl.sqrt(tl.maximum(qb * qb - 4 * qa * qc, 0.0)))
    t = tl.minimum(tl.maximum(tl.where(root == root, root, 0.0), 0.0), 1.0)
    w = w0 + t * dw
    # the first optimal solution on the support of an end of the cell, its system as it is
    # or regularised (_exact_on_supports's order), replaces w; a loop, not four inlined
    # copies, which would keep more tiles alive (registers at T = 50)
    found = tl.zeros([], tl.int1)
    for k in range(4):
        support = tl.where(k % 2 == 0, support0, support1)
        reg = tl.where(k >= 2, _f64(_REG_DIAGONAL), 0.0)
        exact, optimal = _cagrad_on_support(a, ab, s, largest, support, reg, tasks, idx)
        w = tl.where(optimal & ~found, exact, w)
        found = found | optimal
    w = tl.where(live, tl.maximum(w, 0.0), 0.0)
    w = w / tl.sum(w, axis=0)
    # the task weights 1/T + λ w, λ = (c ‖g0‖ + eps) / (‖g_w‖ + eps)
    g0_norm = tl.sqrt(tl.maximum(mean, 0.0) + _f64(_EPS))
    gw_norm = tl.sqrt(tl.maximum(tl.sum(w * _times(a, w), axis=0), 0.0))
    lam = (c * g0_norm + _f64(_EPS)) / (gw_norm + _f64(_EPS))
    uniform = 1.0 / tl.sum(tl.where(live, 1.0, 0.0), axis=0).to(tl.float64)
    weights = tl.where(valid, uniform + lam * w, uniform)
    tl.store(out_ptr + idx, weights / _f64(DIVISOR), mask=live)


def cagrad_weights_fused(gram: Tensor, c: float, iters: int, rescale: int, points: int) -> Tensor:
    """``device_solvers.cagrad_weights_device`` for c > 0 in two kernel launches: one program
    per κ for the QPs, then one for the rest. The same steps and formulas, so the same
    weights to rounding. c and the rescale's divisor (1, 1 + c² or 1 + c, computed here as
    the torch path computes it) are constants of the compiled kernels (one compile per
    value, in float64), so nothing is copied to the device for them."""
    tasks = gram.shape[0]
    gram = gram.contiguous()
    x = torch.empty(points, tasks, dtype=torch.float64, device=gram.device)
    z = torch.empty_like(x)
    below = torch.empty(points, dtype=torch.int32, device=gram.device)
    weights = torch.empty(tasks, dtype=torch.float64, device=gram.device)
    block = _block(tasks)
    warps = _warps(block)
    _cagrad_steps_kernel[(points,)](
        gram, x, z, below, tasks, points, iters, C=float(c), BLOCK=block, FRACTION=TAU,
        num_warps=warps,
    )  # fmt: skip
    _cagrad_tail_kernel[(1,)](
        gram, x, z, below, weights, tasks, points, C=float(c), BLOCK=block,
        POINTS=triton.next_power_of_2(points), DIVISOR=(1.0, 1 + c**2, 1 + c)[rescale],
        num_warps=warps,
    )  # fmt: skip
    return weights.to(gram.dtype)


@triton.jit
def _min_norm_candidate(a, support, reg, largest, tasks, idx):
    """``_min_norm_on_support`` for one support, with ``reg`` (0 or the regulariser) on its
    diagonal: the minimiser of wᵀA w on it, and whether it is optimal on the simplex."""
    live = idx < tasks
    m = tl.where(support, 1.0, 0.0).to(tl.float64)
    inv, factored = _support_system(a, m, reg, tasks, idx, True)
    u = _support_solve(inv, a, m, reg, m, True) * m
    w = u / tl.sum(tl.where(live, u, 0.0), axis=0)
    aw = tl.where(live, _times(a, w), 0.0)
    value = tl.sum(aw * w, axis=0)
    tol = _f64(_KKT)
    feasible = (w >= -tol) & (aw - value >= -tol * largest)
    return w, _all(feasible & _finite(w), live) & factored


@triton.jit
def _mgda_kernel(g_ptr, out_ptr, tasks, iters, BLOCK: tl.constexpr, FRACTION: tl.constexpr):
    """One program: ``device_solvers.mgda_weights_device``, the interior-point steps, the
    four support candidates and the choice among them."""
    idx = tl.arange(0, BLOCK)
    live = idx < tasks
    a, valid, _, count = _normalised_gramian(g_ptr, tasks, idx)
    a = 0.5 * (a + tl.trans(a))
    a = tl.where(_finite(a), a, 0.0)
    largest = tl.max(tl.sum(tl.where(idx[:, None] == idx[None, :], a, 0.0), axis=0), axis=0)
    lin = tl.zeros(idx.shape, tl.float64)
    reg = _f64(_REG_DIAGONAL)
    x, z = _interior_point_steps(a, reg, lin, tasks, iters, idx, FRACTION, True)
    w_ip = tl.where(live, tl.maximum(x, 0.0), 0.0)
    w_ip = w_ip / tl.sum(w_ip, axis=0)
    # two supports (w_i > z_i, and the wider 10 w_i > z_i), each solved as it is and with the
    # regulariser: the first optimal of the four, in _min_norm_on_support's order, replaces w
    narrow, wide = live & (x > z), live & (10 * x > z)
    w = w_ip
    found = tl.zeros([], tl.int1)
    # a loop, not four inlined copies: the compiler would keep their common tiles
    # ((A + 1) * mmᵀ) alive from one copy to the next, and spill at T = 50
    for k in range(4):
        support = tl.where(k % 2 == 0, narrow, wide)
        reg = tl.where(k >= 2, _f64(_REG_DIAGONAL), 0.0)
        candidate, optimal = _min_norm_candidate(a, support, reg, largest, tasks, idx)
        w = tl.where(optimal & ~found, candidate, w)
        found = found | optimal
    w = tl.where(live, tl.maximum(w, 0.0), 0.0)
    w = w / tl.sum(w, axis=0)
    tl.store(out_ptr + idx, tl.where(valid, w, 1.0 / count), mask=live)


def mgda_weights_fused(gram: Tensor, iters: int) -> Tensor:
    """``device_solvers.mgda_weights_device`` in one kernel launch (one program): the same
    steps and formulas, so the same weights to rounding."""
    tasks = gram.shape[0]
    weights = torch.empty(tasks, dtype=torch.float64, device=gram.device)
    block = _block(tasks)
    _mgda_kernel[(1,)](
        gram.contiguous(), weights, tasks, iters, BLOCK=block, FRACTION=TAU,
        num_warps=_warps(block),
    )  # fmt: skip
    return weights.to(gram.dtype)


# --- a whole UPGrad or DualProj solve in one launch ------------------------------------------

_ZERO = tl.constexpr(_ZERO_GRADIENT)


@triton.jit
def _orthant_candidate(hessian, lin, support, largest, tasks, idx):
    """``_orthant_on_supports`` for one support S: x with H_SS x_S = -p_S (0 off S), refined
    (``_support_solve``), and whether it is optimal over x >= 0: x >= 0, every reduced cost
    (H x + p)_i >= 0 off S, to 1e-9 of H's largest diagonal entry, a successful sweep, and
    (a check the torch path leaves to Cholesky's stability) the system solved to that
    tolerance."""
    live = idx < tasks
    m = tl.where(support, 1.0, 0.0).to(tl.float64)
    zero = tl.zeros([], tl.float64)  # H holds its regulariser
    inv, factored = _support_system(hessian, m, zero, tasks, idx, False)
    rhs = -lin * m
    x = _support_solve(inv, hessian, m, zero, rhs, False)
    residual = rhs - _support_times(hessian, m, zero, x, False)
    x = x * m
    reduced = _times(hessian, x) + lin
    tol = _f64(_KKT) * largest
    feasible = (x >= -tol) & (support | (reduced >= -tol)) & (tl.abs(residual) <= tol)
    return x, _all(feasible & _finite(x), live) & factored


@triton.jit
def _dual_cone_kernel(
    g_ptr, u_ptr, v_ptr, tasks, iters,
    REG_EPS: tl.constexpr, NORM_EPS: tl.constexpr, BLOCK: tl.constexpr, FRACTION: tl.constexpr,
):  # fmt: skip
    """One program per target u_k: ``device_solvers.dual_cone_weights_device`` for its row,
    the matrix set up from the Gramian, the interior-point steps over the orthant, the two
    support candidates, the choice; v_k = u_k + x stored."""
    k = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, BLOCK)
    live = idx < tasks
    eye = (idx[:, None] == idx[None, :]) & live[:, None]
    gram = _load_matrix(g_ptr, 0, tasks, idx)
    count = tl.sum(tl.where(live, 1.0, 0.0), axis=0).to(tl.float64)
    trace = tl.sum(tl.sum(tl.where(eye, gram, 0.0), axis=0), axis=0)
    valid = (trace >= _f64(NORM_EPS)) & (trace > 0) & (trace < float("inf"))
    scaled = tl.where(valid, gram / tl.where(valid, trace, 1.0), 0.0)
    scaled = 0.5 * (scaled + tl.trans(scaled))
    scaled = tl.where(_finite(scaled), scaled, 0.0)
    scaled = (scaled + tl.where(eye, _f64(REG_EPS), 0.0)) * count
    diag = tl.sum(tl.where(eye, scaled, 0.0), axis=0)
    most = tl.max(diag, axis=0)
    task = live & (diag > _f64(_ZERO) * most)  # zero-gradient tasks: x_i = 0
    # unit diagonal (v = D^-1/2 y): the tie-break is then relative to each task's own scale
    root = tl.sqrt(tl.where(task, diag, 1.0))
    hessian = tl.where(
        task[:, None] & task[None, :],
        scaled / (root[:, None] * root[None, :]),
        tl.where(eye, 1.0, 0.0),
    ) + tl.where(eye, _f64(_REG_DIAGONAL), 0.0)
    target = tl.load(u_ptr + k * tasks + idx, mask=live, other=0.0).to(tl.float64)
    lin = tl.where(task, _times(hessian, target * root), 0.0)  # H u in y
    zero = tl.zeros([], tl.float64)  # H holds its regulariser
    x, z = _interior_point_steps(hessian, zero, lin, tasks, iters, idx, FRACTION, False)
    largest = tl.max(tl.sum(tl.where(eye, hessian, 0.0), axis=0), axis=0)
    # the supports x_i > z_i and the wider 10 x_i > z_i: the first optimal replaces x
    found = tl.zeros([], tl.int1)
    best = tl.where(live, tl.maximum(x, 0.0), 0.0)
    for c in range(2):  # a loop, not two inlined copies (registers)
        support = live & tl.where(c == 0, x > z, 10 * x > z)
        candidate, optimal = _orthant_candidate(hessian, lin, support, largest, tasks, idx)
        best = tl.where(optimal & ~found, candidate, best)
        found = found | optimal
    best = tl.where(tl.where(task, most, 0.0) > 0, tl.maximum(best, 0.0) / root, 0.0)
    tl.store(v_ptr + k * tasks + idx, target + best, mask=live)


def dual_cone_weights_fused(
    gram: Tensor, targets: Tensor, reg_eps: float, norm_eps: float, iters: int
) -> Tensor:
    """``device_solvers.dual_cone_weights_device`` in one kernel launch, one program per row
    of ``targets`` [K, T]: the projections v [K, T]. The same steps and formulas, the support
    steps' systems refined against the matrix and checked solved (where the sweep's inverse
    is inexact: singular Gramians, T > P), so the same projections to rounding."""
    problems, tasks = targets.shape
    out = torch.empty(problems, tasks, dtype=torch.float64, device=gram.device)
    block = _block(tasks)
    _dual_cone_kernel[(problems,)](
        gram.contiguous(), targets.contiguous(), out, tasks, iters,
        REG_EPS=float(reg_eps), NORM_EPS=float(norm_eps), BLOCK=block, FRACTION=TAU,
        num_warps=_warps(block),
    )  # fmt: skip
    return out.to(gram.dtype)


JACOBI_TASKS = 16
"""The most tasks ``jacobi_eigh_fused`` takes (IMTL-G's graphs, ``IMTLG.graph_tasks``): one
warp per matrix; above, its products on a 64 x 64 tile spill registers."""


@triton.jit
def _jacobi_kernel(a_ptr, vals_ptr, vecs_ptr, tasks, sweeps, BLOCK: tl.constexpr):
    """One program per symmetric matrix: ``device_solvers.jacobi_eigh``'s rounds, each T/2
    disjoint rotations as J = diag(cos) + the signed sines at (lo, hi) and (hi, lo), A <- Jᵀ A J
    and V <- V J by products on the tile. The padding rows pair with themselves (θ = 0)."""
    k = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, BLOCK)
    rows, cols = idx[:, None], idx[None, :]
    live = idx < tasks
    A = _load_matrix(a_ptr, k, tasks, idx)  # zero outside T x T: the padding is never rotated
    V = tl.where(rows == cols, 1.0, 0.0).to(tl.float64)
    n = tasks + tasks % 2
    last = n - 1
    for _ in range(sweeps):
        for r in range(last):
            # the round-robin pairs of _round_robin: i + j = r (mod n - 1), the row left over
            # with n - 1
            partner = (r - idx + last) % last
            partner = tl.where(partner == idx, last, partner)
            partner = tl.where(idx == last, (r * (n // 2)) % last, partner)
            partner = tl.where(idx < n, partner, idx)
            is_lo = idx < partner
            diag = tl.sum(tl.where(rows == cols, A, 0.0), axis=1)
            other = tl.gather(diag, partner, axis=0)
            diff = tl.where(is_lo, other - diag, diag - other)  # A[hi, hi] - A[lo, lo] for both
            # A[lo, hi] for both rows of a pair: A is symmetric to rounding only, and in a null
            # space both entries are rounding, which must give one angle
            off_row = tl.reshape(tl.gather(A, partner[:, None], axis=1), idx.shape)  # A[i, p]
            off_col = tl.reshape(tl.gather(A, partner[None, :], axis=0), idx.shape)  # A[p, i]
            off = tl.where(is_lo, off_row, off_col)
            # tan θ with |θ| <= π/4 from tan 2θ = 2 A[lo, hi] / (A[hi, hi] - A[lo, lo])
            y = tl.where(diff >= 0, 2.0 * off, -2.0 * off)
            x = tl.abs(diff)
            radius = tl.sqrt(x * x + y * y)
            t = tl.where(radius > 0, y / tl.where(radius > 0, x + radius, 1.0), 0.0)
            cos = 1.0 / tl.sqrt(1.0 + t * t)
            sin = tl.where(is_lo, t * cos, -t * cos)  # J[lo, hi] = sin θ, J[hi, lo] = -sin θ
            J = tl.where(rows == cols, cos[:, None], 0.0) + tl.where(
                cols == partner[:, None], sin[:, None], 0.0
            )
            A = tl.dot(tl.trans(J), tl.dot(A, J, input_precision="ieee"), input_precision="ieee")
            V = tl.dot(V, J, input_precision="ieee")
    diag = tl.sum(tl.where(rows == cols, A, 0.0), axis=1)
    tl.store(vals_ptr + k * tasks + idx, diag, mask=live)
    tl.store(
        vecs_ptr + k * tasks * tasks + rows * tasks + cols, V, mask=live[:, None] & live[None, :]
    )


def jacobi_eigh_fused(a: Tensor, sweeps: int) -> tuple[Tensor, Tensor]:
    """``device_solvers.jacobi_eigh`` in one kernel launch: the eigenvalues [..., T] and
    eigenvectors [..., T, T] of symmetric ``a`` [..., T, T] (float64, T <= ``JACOBI_TASKS``) by
    ``sweeps`` sweeps of Jacobi rotations. The angles come from tan θ instead of atan2, so
    the two agree to rounding, not bit for bit."""
    tasks = a.shape[-1]
    if tasks > JACOBI_TASKS:
        raise ValueError(f"jacobi_eigh_fused takes up to {JACOBI_TASKS} tasks, not {tasks}")
    flat = a.reshape(-1, tasks, tasks).contiguous()
    vals = torch.empty(flat.shape[:2], dtype=a.dtype, device=a.device)
    vecs = torch.empty_like(flat)
    block = _block(tasks)
    _jacobi_kernel[(flat.shape[0],)](
        flat, vals, vecs, tasks, sweeps, BLOCK=block, num_warps=_warps(block)
    )
    return vals.reshape(a.shape[:-1]), vecs.reshape(a.shape)


def _block(tasks: int) -> int:
    """The tile's side: T rounded up to a power of two, at least 16 (as measured at T = 10;
    the padding is the identity)."""
    return max(16, triton.next_power_of_2(tasks))


def _warps(block: int) -> int:
    """Warps per program: one per 512 entries of the [BLOCK, BLOCK] tile, 1 to 8."""
    return max(1, min(8, block * block // 512))
