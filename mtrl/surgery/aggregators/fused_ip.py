"""The simplex interior-point steps of the device solvers as one Triton kernel
(``fused_solvers``), and the Jacobi rotations of IMTL-G, ConFIG and Aligned-MTL as another
(``jacobi_eigh_fused``: the rounds of ``device_solvers.jacobi_eigh``, 12 small kernels each,
in one launch; not yet run on a GPU, so only ``fused_solvers=true`` takes it).

``device_solvers._interior_point`` launches about 44 kernels per step (9 compiled) and
cuSOLVER/cuBLAS calls besides; replayed from a CUDA graph each costs about 2 us, which is
what keeps CAGrad and MGDA at 2.3-2.8x a plain update on a GPU even compiled (BENCHMARKS.md).
Here every step of every problem runs in one launch: one program per problem holds its T x T
matrix in registers and inverts each step's Newton matrix by the sweep operator (symmetric
Gauss-Jordan: no pivoting, which a positive definite matrix does not need), so a solve is one
kernel whatever its number of steps. The support steps' small systems go through a second
kernel the same way (``spd_solve_fused``).

The steps are those of ``_interior_point`` with the simplex (the same start, predictor,
corrector and step lengths). The matrices are symmetric, so every product with a vector sums
down the tile's columns, which in Triton's layout of the tile is one exchange between
threads where a sum along the rows is a chain of them; and each step divides by x and z
once, then multiplies (a float64 division is a long instruction sequence on a GPU). The
tests run these kernels in Triton's interpreter on the CPU (``TRITON_INTERPRET=1``) and
compiled on a GPU, against the torch solvers and the host's, and compile them for sm_90 on
any machine to check that no kernel spills registers (``benchmarks/fused_kernels.py
--check``). On a GPU the kernel's fused multiply-adds let the iterates converge past where
the torch solver's rounding stalls them (an inactive weight 1e-23 against 1e-14 after 12
steps), so the two agree in the objective (1e-9), not bit for bit. The orthant problems of
UPGrad and DualProj are not fused: with an orthant variant of this kernel an H200 gave
UPGrad directions 0.36 (relative) off the exact ones where T > P, which the interpreter does
not reproduce; so a captured update first checks the kernels against the torch solver on its
own device (``solver_check``) and runs the torch solver where they disagree. Needs the
``triton`` package (it comes with torch's CUDA builds; ``mtrl-bench[fused]`` installs it for
the CPU tests).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor

TAU = 0.99
"""``device_solvers._TAU``: the fraction of the step to the boundary an interior step takes."""


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
    NaN if any is), as a vector of equal entries.

    Each pivot's column is gathered (one exchange between threads, where a masked sum took a
    chain of them) and the pivot inverted once for the whole tile: compiled for sm_90 a pivot
    is about a third of the instructions it was with a masked sum and divisions
    (``benchmarks/fused_kernels.py``, BENCHMARKS.md)."""
    rows = idx[:, None]
    cols = idx[None, :]
    smallest = tl.zeros(idx.shape, tl.float64) + float("inf")
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
def _simplex_kernel(
    h_ptr, p_ptr, x_ptr, z_ptr, tasks, iters, BLOCK: tl.constexpr, FRACTION: tl.constexpr
):
    """One program per problem: ``iters`` Mehrotra steps of ``min ½ xᵀH x + pᵀx`` over the
    simplex from x = 1/T, z = 1 (``device_solvers._interior_point`` with ``simplex``)."""
    k = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, BLOCK)
    live = idx < tasks
    eye = idx[:, None] == idx[None, :]
    hessian = _load_matrix(h_ptr, k, tasks, idx)
    lin = tl.load(p_ptr + k * tasks + idx, mask=live, other=0.0).to(tl.float64)  # p + ν
    one = tl.full([BLOCK], 1.0, tl.float64)
    count = tl.sum(tl.where(live, one, 0.0), axis=0)
    minus_one = -tl.max(one, axis=0)  # float64 scalars (a float literal would be float32)
    minus_fraction = tl.max(tl.full([BLOCK], -FRACTION, tl.float64), axis=0)
    x = tl.where(live, one / count, one)
    z = one
    for _ in range(iters):
        # divisions are the costliest arithmetic here: 1/x and 1/z once a step
        rx = one / x
        rz = one / z
        grad = tl.where(live, tl.sum(hessian * x[:, None], axis=0) + lin, 0.0)  # Hx + p + ν
        # minus the inverse of M = H + Z/X (padding: the identity)
        scaled = hessian + tl.where(eye, tl.where(live, z * rx, 1.0)[:, None], 0.0)
        inv, _ = _sweep(scaled, tasks, idx)
        xz = tl.where(live, x * z, 0.0)
        mu = tl.sum(xz, axis=0) / count
        # predictor (affine scaling): the right side is the gradient; Δν from 1ᵀΔx = 0
        v = -tl.sum(tl.where(live[:, None], inv, 0.0), axis=0)  # M⁻¹ 1
        v_sum = tl.sum(tl.where(live, v, 0.0), axis=0)
        u = -tl.sum(inv * grad[:, None], axis=0)
        dx = tl.where(live, (tl.sum(tl.where(live, u, 0.0), axis=0) / v_sum) * v - u, 0.0)
        dz = -(xz + z * dx) * rx
        alpha_x = _step_to_boundary(dx, rx, live, minus_one)
        alpha_z = _step_to_boundary(dz, rz, live, minus_one)
        affine = tl.where(live, (x + alpha_x * dx) * (z + alpha_z * dz), 0.0)
        ratio = tl.sum(affine, axis=0) / count / mu
        sigma_mu = ratio * ratio * ratio * mu
        # corrector: centring plus the second-order term of the predictor
        comp = tl.where(live, xz + dx * dz - sigma_mu, 0.0)
        u = -tl.sum(inv * tl.where(live, grad - z + comp * rx, 0.0)[:, None], axis=0)
        t = tl.sum(tl.where(live, u, 0.0), axis=0) / v_sum  # -Δν
        dx = tl.where(live, t * v - u, 0.0)
        dz = -(comp + z * dx) * rx
        alpha_x = _step_to_boundary(dx, rx, live, minus_fraction)
        alpha_z = _step_to_boundary(dz, rz, live, minus_fraction)
        x = x + alpha_x * dx
        z = z + alpha_z * dz
        lin = lin - alpha_z * t
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


@triton.jit
def _spd_solve_kernel(m_ptr, r_ptr, out_ptr, ok_ptr, tasks, RHS: tl.constexpr, BLOCK: tl.constexpr):
    """One program per system: X = M⁻¹ R for its ``RHS`` right sides, and whether every
    pivot was positive."""
    k = tl.program_id(0).to(tl.int64)
    idx = tl.arange(0, BLOCK)
    live = idx < tasks
    padding = (idx[:, None] == idx[None, :]) & ~live[:, None]
    matrix = tl.where(padding, 1.0, _load_matrix(m_ptr, k, tasks, idx))
    inv, pivots = _sweep(matrix, tasks, idx)
    smallest = tl.min(pivots, axis=0)
    for r in tl.static_range(RHS):
        rhs = tl.load(r_ptr + (k * tasks + idx) * RHS + r, mask=live, other=0.0).to(tl.float64)
        tl.store(
            out_ptr + (k * tasks + idx) * RHS + r, -tl.sum(inv * rhs[:, None], axis=0), mask=live
        )
    # a NaN pivot fails too, as it fails a Cholesky factorisation
    tl.store(ok_ptr + k, ((smallest > 0) & (smallest < float("inf"))).to(tl.int8))


def spd_solve_fused(matrices: Tensor, rhs: Tensor) -> tuple[Tensor, Tensor]:
    """X [..., T, R] with ``matrices @ X = rhs`` for positive definite ``matrices`` [..., T, T]
    (float64), in one kernel launch, and whether each factorisation succeeded [...] (bool):
    what ``cholesky_ex`` and two triangular solves give, with the sweep operator instead."""
    batch, tasks, columns = rhs.shape[:-2], rhs.shape[-2], rhs.shape[-1]
    matrices = matrices.expand(*batch, tasks, tasks).reshape(-1, tasks, tasks).contiguous()
    flat = rhs.reshape(-1, tasks, columns).contiguous()
    out = torch.empty_like(flat)
    ok = torch.empty(flat.shape[0], dtype=torch.int8, device=flat.device)
    block = _block(tasks)
    _spd_solve_kernel[(flat.shape[0],)](
        matrices, flat, out, ok, tasks, RHS=columns, BLOCK=block, num_warps=_warps(block)
    )
    return out.reshape(rhs.shape), (ok != 0).reshape(batch)  # Inductor takes no int8 -> bool view


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
