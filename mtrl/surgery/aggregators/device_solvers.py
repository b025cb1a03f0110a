"""Device-side weight solvers for PCGrad, GradVac, CAGrad, IMTL-G, ConFIG, Aligned-MTL, FairGrad,
SDMGrad, MGDA, UPGrad and DualProj: tensor ops only, on the Gramian's device.

No host sync (no ``.item()``, ``bool(tensor)``, ``.cpu()``, ``.numpy()``), a fixed number of
steps and no data-dependent shapes, so one aggregation can be recorded in a CUDA graph and
replayed; on the CPU they compute what the host solvers compute (PCGrad exactly, CAGrad to the
tolerance its tests check, IMTL-G to ~1e-11, ConFIG and Aligned-MTL to ~1e-12, FairGrad's
and GradVac's steps to ~1e-10, SDMGrad's to rounding amplified by its step, MGDA's, UPGrad's
and DualProj's directions to rounding where their support steps succeed). IMTL-G,
ConFIG and Aligned-MTL eigendecompose the Gramian by ``torch.linalg.eigh``, which cuSOLVER
does not run under capture (pytorch/pytorch#188355), outside graphs, and by Jacobi rotations
in tensor ops in a captured update (``jacobi_eigh``).

CAGrad's dual ``min_{w in simplex} wᵀA b + s sqrt(wᵀA w + eps)`` is solved through the family of
quadratic programs ``x(κ) = argmin_{x in hull(G)} ‖x + κ g0‖²`` (g0 the mean gradient): the
dual's solution is ``x(κ*)`` at the unique κ* with ``κ* s = sqrt(‖x(κ*)‖² + eps)``, and
``sqrt(‖x(κ)‖² + eps) / κ`` decreases with κ. Every QP of a log-spaced grid of κ is solved
at once (batched) by a fixed number of Mehrotra predictor-corrector interior-point steps, the
grid cell where the condition changes sign is found by counting, and κ* inside it follows from
a quadratic equation, x(κ) being piecewise linear in κ. A last step solves the KKT system on
the support of either end of the cell and keeps the result where it is optimal, which makes
the solution exact to rounding. First-order methods (accelerated projected gradient) need
thousands of steps on problems with more tasks than parameters, where the hull's faces are
badly conditioned; the interior-point steps do not.

Cost: 911 aten ops per CAGrad solve at the default 12 steps (counted by a dispatch mode; the
same sequence for every input of a given shape; 58 per interior-point step). MGDA: one
problem through the same interior-point steps, then a support step (105 aten ops around 58 per
step as counted by the tests' dispatch mode: 1033 at the default 16 steps); IMTL-G: 48 aten ops,
one of them the eigendecomposition (ConFIG and Aligned-MTL about as many; with Jacobi
rotations some 1,600 at T = 10); UPGrad and DualProj: their T or one projections through
interior-point steps over the positive orthant at once, then a support step (112 aten ops
around 47 per step: 1052 at the default 20 steps). Views are counted here; the kernels among
them are 44 per step with the simplex, 36 without. With ``fused`` (for GPUs, ``fused_ip``)
a CAGrad solve is two Triton kernel launches (one program per κ for the interior-point steps,
one for the rest), an MGDA, UPGrad or DualProj solve one, and the Jacobi rotations
(``jacobi_eigh``, the eigendecomposition in a CUDA graph) one.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

EPS = 1e-8
"""CAGrad's smoothing constant (the official code's 1e-8, as in ``cagrad.py``)."""

CAGRAD_ITERS = 12
"""Interior-point steps per CAGrad solve. Over the tests' 186 problems the worst direction
cosine with SLSQP's was 1 - 6e-4 at 8 steps, 1 - 3e-6 at 10 and 1 - 6e-7 at 12 (SLSQP itself
is about 1e-6 off the optimum on some); the tests ask for 0.9999."""

CAGRAD_POINTS = 256
"""Values of κ solved at once; the cell between two of them bounds the interpolation error."""

_TAU = 0.99
"""Fraction of the step to the boundary of the positive orthant that an interior step takes."""

_REG = 1e-13
"""Added to the diagonal of each QP's Hessian (the Gramian is normalised to mean diagonal 1):
keeps the Newton systems positive definite when the Gramian is singular (T > P)."""


def pcgrad_weights_device(gram: Tensor, order: Tensor) -> Tensor:
    """Coefficients C [T, T] with ``C @ G`` the projected gradients of PCGrad, on gram's device.

    The transcription of ``pcgrad.pcgrad_weights``: T-1 steps, one position of every task's
    order at a time; task i removes the component of its current projected gradient along the
    original g_j when the two conflict, a zero gradient never conflicting. Rather than forming
    each dot product ``<g_i^PC, g_j>`` from the coefficients (five ops a step), it keeps every
    task's dot products with all the tasks it has still to visit, scaled by their squared
    norms, and updates them after each step: two ops a step, a fixed sequence of 2(T-1) + 13 ops.

    :param gram: the Gramian G Gᵀ [T, T] (float64 for results equal to the host's to ~1e-12).
    :param order: [T, T-1] long on gram's device; row i a permutation of the tasks other than i.
    """
    tasks = gram.shape[0]
    # A zero gradient never conflicts: dividing by inf gives a zero step.
    sq_norms = gram.diagonal()
    minus_norms = torch.where(sq_norms > 0, -sq_norms, -torch.inf)[order]  # [T, T-1]
    # neg_dots[i, a] = -<g_i^PC, g_j> / |g_j|² for j = order[i, a], the step if positive; after
    # step b adds s_b g_{order[i, b]} to g_i^PC, neg_dots[i, :] grows by s_b pair[i, :, b]
    neg_dots = gram.gather(1, order) / minus_norms
    pair = gram[order.unsqueeze(2), order.unsqueeze(1)] / minus_norms.unsqueeze(2)
    by_step = pair.permute(2, 0, 1).contiguous()  # [b, i, a]
    steps = []  # stacked once at the end: torch.compile traces no out= into a slice
    for k in range(order.shape[1]):
        step = neg_dots[:, k].clamp(min=0)
        steps.append(step)
        neg_dots.addcmul_(step.unsqueeze(1), by_step[k])
    eye = torch.eye(tasks, dtype=gram.dtype, device=gram.device)
    return eye.scatter_add_(1, order, torch.stack(steps, dim=1))


def gradvac_weights_device(
    gram: Tensor, targets: Tensor, order: Tensor, beta: float, eps: float = 1e-8
) -> Tensor:
    """GradVac's task weights [T] (the column sums of its coefficients) on gram's device, the
    EMA targets [T, T] updated in place: the transcription of ``gradvac.gradvac_coefficients``
    for one group, T - 1 steps, one position of every task's ``order`` [T, T-1] at a time.

    Each pair (i, j) is visited once per call, so what depends only on the pair (g_j's norm
    and row of the Gramian, the target, its sine, the step's denominator) is gathered along
    the orders once, and the new targets are scattered back once at the end: about 23 kernels
    a step where a step-by-step transcription launched 37, with the same arithmetic."""
    coeffs = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    dots = gram.clone()  # dots[i, m] = <g_i^vac, g_m>
    norm_j = torch.sqrt(gram.diagonal().clamp(min=0.0))[order]  # [T, T-1]
    rows_j = gram[order]  # [T, T-1, T]: g_j's row of the Gramian
    target = targets.gather(1, order)
    sin_target = torch.sqrt((1.0 - target * target).clamp(min=0.0))
    denominator = norm_j * sin_target + eps
    live = norm_j > 0
    cosines = []
    for k in range(order.shape[1]):
        j = order[:, k : k + 1]  # [T, 1]
        col = slice(k, k + 1)
        dot = dots.gather(1, j)
        norm_i = torch.sqrt((coeffs * dots).sum(dim=1, keepdim=True).clamp(min=0.0))
        cos = dot / (norm_i * norm_j[:, col] + eps)
        sin = torch.sqrt((1.0 - cos * cos).clamp(min=0.0))
        t = target[:, col]
        step = norm_i * (t * sin - cos * sin_target[:, col]) / denominator[:, col]
        step = torch.where((cos < t) & live[:, col], step, 0.0)
        coeffs.scatter_add_(1, j, step)
        dots.addcmul_(step, rows_j[:, k])
        cosines.append(cos)
    targets.scatter_(1, order, (1.0 - beta) * target + beta * torch.cat(cosines, dim=1))
    return coeffs.sum(dim=0)


def random_order_device(
    tasks: int,
    shared: bool,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """For each task a random order of the other tasks, [T, T-1] long, drawn on ``device``.

    ``shared``: one random permutation of the tasks, which every task follows skipping itself;
    else an independent permutation per task. Each row sorts random keys with the task's own
    key pushed last, so no data-dependent shapes. The keys come from torch's global generator
    on ``device`` (a CUDA graph replay draws new orders) unless ``generator`` is given.
    """
    rows = 1 if shared else tasks
    keys = torch.rand((rows, tasks), generator=generator, device=device, dtype=torch.float64)
    self_last = torch.eye(tasks, dtype=torch.bool, device=keys.device)
    keys = keys.expand(tasks, tasks).masked_fill(self_last, 2.0)  # keys lie in [0, 1)
    return keys.argsort(dim=1, stable=True)[:, : tasks - 1]


def cagrad_weights_device(
    gram: Tensor,
    c: float,
    iters: int = CAGRAD_ITERS,
    rescale: int = 0,
    points: int = CAGRAD_POINTS,
    fused: bool = False,
) -> Tensor:
    """CAGrad's task weights ``(1/T + λ w) / rescale`` [T] from the Gramian, on gram's device.

    The same quantities as ``CAGrad.weights``: A the Gramian over its mean diagonal, w the dual
    solution (``cagrad_dual_device``), ``λ = (c ‖g0‖ + eps) / (‖g_w‖ + eps)``. ``c = 0`` gives
    the mean weights exactly, and so does a Gramian that is zero or not finite (the host path
    checks the latter before solving).

    :param gram: the Gramian G Gᵀ [T, T], float64.
    :param iters: interior-point steps of the dual solver.
    :param rescale: 0 none, 1 divide by 1 + c², 2 divide by 1 + c.
    :param points: values of κ solved at once.
    :param fused: the whole solve in two Triton kernel launches (``fused_ip``), for GPUs.
    """
    if fused and c != 0:
        from mtrl.surgery.aggregators.fused_ip import cagrad_weights_fused

        return cagrad_weights_fused(gram, c, iters, rescale, points)
    tasks = gram.shape[0]
    mean_weights = torch.full((tasks,), 1.0 / tasks, dtype=gram.dtype, device=gram.device)
    if c == 0:
        weights = mean_weights
    else:
        scale = gram.diagonal().mean()
        # a NaN/inf gradient makes its diagonal entry, and so the mean, NaN or inf; finite
        # diagonals bound every entry (|G_ij| <= sqrt(G_ii G_jj))
        valid = (scale > 0) & (scale < torch.inf)
        a = torch.where(valid, gram / scale, 0.0)  # no NaN below even for an invalid Gramian
        w = cagrad_dual_device(a, c, iters, points)
        g0_norm = torch.sqrt(a.mean().clamp(min=0) + EPS)
        gw_norm = torch.sqrt((w @ a @ w).clamp(min=0))
        lam = (c * g0_norm + EPS) / (gw_norm + EPS)
        weights = torch.where(valid, mean_weights + lam * w, mean_weights)
    if rescale == 1:
        weights = weights / (1 + c**2)
    elif rescale == 2:
        weights = weights / (1 + c)
    return weights


def cagrad_dual_device(
    a: Tensor,
    c: float,
    iters: int = CAGRAD_ITERS,
    points: int = CAGRAD_POINTS,
) -> Tensor:
    """The minimiser w [T] over the simplex of ``wᵀA b + s sqrt(wᵀA w + eps)``, b = 1/T and
    ``s = c sqrt(mean(A) + eps) + eps``, for a Gramian A normalised to mean diagonal 1.

    With g0 = Gᵀb, s ‖x‖ = min over λ > 0 of s (‖x‖²/λ + λ)/2, so the solution is the QP
    solution ``x(κ) = argmin ‖x + κ g0‖²`` over the hull at the κ where ``κ s = sqrt(‖x(κ)‖²
    + eps)``. The grid spans every possible κ: below ``sqrt(eps) / (2s)`` the left side is the
    smaller, above ``2 sqrt(max_i A_ii + eps) / s`` the larger (‖x‖² <= max_i A_ii).
    """
    ab = a.mean(dim=1)
    s = c * torch.sqrt(a.mean().clamp(min=0) + EPS) + EPS
    log_s = torch.log(s)
    low = 0.5 * math.log(EPS) + math.log(0.5) - log_s
    high = 0.5 * torch.log(a.diagonal().amax().clamp(min=0) + EPS) + math.log(2.0) - log_s
    grid = torch.linspace(0.0, 1.0, points, dtype=a.dtype, device=a.device)
    kappa = torch.exp(torch.lerp(low, high, grid))  # [K]
    # x(κ): min ½ wᵀA w + κ bᵀA w, divided by 1 + κ so that every QP has entries O(1)
    theta = kappa / (1 + kappa)
    eye = torch.eye(a.shape[0], dtype=a.dtype, device=a.device)
    hessians = (1 - theta)[:, None, None] * a + _REG * eye
    W, Z = simplex_qp_device(hessians, theta[:, None] * ab, iters)  # [K, T] each
    # the sign of κ s - sqrt(‖x(κ)‖² + eps) changes once, after the count of negative values
    q = ((W @ a) * W).sum(dim=1)
    below = (kappa * s < torch.sqrt(q.clamp(min=0) + EPS)).sum()
    first = (below - 1).clamp(min=0, max=points - 2)
    pair = torch.stack([first, first + 1])
    (k0, k1), (w0, w1) = kappa[pair], W[pair]
    # on the cell x(κ) is linear (if no breakpoint lies inside): (κ s)² = ‖x‖² + eps is
    # quadratic in the position t in [0, 1], negative at t = 0
    dk, dw = k1 - k0, w1 - w0
    a_dw = a @ dw
    s2 = s * s
    qa = dk * dk * s2 - dw @ a_dw
    qb = 2 * (k0 * dk * s2 - w0 @ a_dw)
    qc = k0 * k0 * s2 - w0 @ a @ w0 - EPS
    root = 2 * qc / (-qb - torch.sqrt((qb * qb - 4 * qa * qc).clamp(min=0)))
    t = torch.nan_to_num(root, nan=0.0).clamp(0, 1)
    w = w0 + t * dw
    # exact where the support of an end of the cell is the solution's (it is unless two
    # breakpoints of x(κ) fall in the cell): the first candidate that is optimal replaces w
    exact, optimal = _exact_on_supports(a, ab, s, W[pair] > Z[pair])  # [4, T], [4]
    w = _first_optimal(exact, optimal, w).clamp(min=0)
    return w / w.sum()


def _exact_on_supports(a: Tensor, ab: Tensor, s: Tensor, support: Tensor) -> tuple[Tensor, Tensor]:
    """For each candidate support S [C, T] (bool): the dual's solution if it is supported on S,
    and whether that solution is optimal, with the host's tolerance ~1e-9: candidates [2C, T]
    and [2C] bools, the supports' systems solved as they are (0..C-1), then with ``_REG`` on
    their diagonal (C..2C-1).

    On S the QP's KKT system ``A_SS w_S + κ (Ab)_S + ν 1 = 0, Σ w_S = 1`` is linear, so
    ``w = p + κ r`` and ``(κ s)² = wᵀA w + eps`` is a quadratic in κ. With Σ w_S = 1 the
    system reads ``(A_SS + 11ᵀ) w_S + κ (Ab)_S + (ν - 1) 1 = 0``, whose matrix is positive
    definite where the solution on S is unique: one Cholesky factorisation, two right sides.
    With duplicate tasks on S it is singular, and whether its factorisation fails depends on
    rounding (a last pivot of 0, or of 5e-16); the regularised system is positive definite
    and solves it (how w splits between duplicates does not change the direction), as in
    ``_min_norm_on_support``. The result is optimal if w >= 0 and no task off S has a
    negative reduced cost ``(A w + κ A b)_i + ν``; a failed factorisation is not.
    """
    m = support.to(a.dtype)
    mm = m[:, :, None] * m[:, None, :]
    base = (a + 1.0) * mm + torch.diag_embed(1 - m)
    matrices = torch.cat([base, base + _REG * torch.diag_embed(m)])
    support, m = torch.cat([support, support]), torch.cat([m, m])
    uy, factored = _spd_solve(matrices, torch.stack([m, -ab * m], dim=2))  # [2C, T, 2]
    u, y = uy[:, :, 0], uy[:, :, 1]
    u_sum, y_sum = u.sum(dim=1, keepdim=True), y.sum(dim=1, keepdim=True)
    p, r = u / u_sum, y - (y_sum / u_sum) * u  # w = p + κ r
    nu_p, nu_r = 1 - 1 / u_sum, y_sum / u_sum  # ν = ν_p + κ ν_r
    ap, ar = p @ a, r @ a
    qa = s * s - (ar * r).sum(dim=1)
    qb = -2 * (ap * r).sum(dim=1)
    qc = -(ap * p).sum(dim=1) - EPS
    kappa = (2 * qc / (-qb - torch.sqrt((qb * qb - 4 * qa * qc).clamp(min=0))))[:, None]
    w = p + kappa * r
    reduced = ap + kappa * (ar + ab) + nu_p + kappa * nu_r
    scale = a.diagonal().amax() * (1 + kappa)
    feasible = (w >= -1e-9) & (support | (reduced >= -1e-9 * scale))
    optimal = feasible.all(dim=1) & torch.isfinite(w).all(dim=1) & (kappa[:, 0] > 0) & factored
    return w, optimal


def _first_optimal(candidates: Tensor, optimal: Tensor, fallback: Tensor, dim: int = 0) -> Tensor:
    """The first candidate along ``dim`` of ``candidates`` whose flag in ``optimal`` (the same
    axis, broadcast against a candidate) holds, else ``fallback``: the exact support steps'
    choice, branch-free."""
    chosen = fallback
    for k in reversed(range(candidates.shape[dim])):
        chosen = torch.where(optimal.narrow(dim, k, 1), candidates.select(dim, k), chosen)
    return chosen


def _cholesky_solve(chol: Tensor, rhs: Tensor) -> Tensor:
    """X with L Lᵀ X = rhs, batched, by two triangular solves (cuBLAS on CUDA: capturable in a
    CUDA graph, unlike the batched ``torch.cholesky_solve``, which allocates in MAGMA)."""
    y = torch.linalg.solve_triangular(chol, rhs, upper=False)
    return torch.linalg.solve_triangular(chol.mT, y, upper=True)


def _spd_solve(matrices: Tensor, rhs: Tensor) -> tuple[Tensor, Tensor]:
    """X [..., T, R] with ``matrices @ X = rhs`` for positive definite ``matrices``
    [..., T, T], and whether each factorisation succeeded [...]: a Cholesky factorisation and
    two triangular solves."""
    chol, info = torch.linalg.cholesky_ex(matrices)
    return _cholesky_solve(chol, rhs), info == 0


def simplex_qp_device(hessians: Tensor, linear: Tensor, iters: int) -> tuple[Tensor, Tensor]:
    """Minimisers w [K, T] of ``½ wᵀ H_k w + p_kᵀ w`` over the simplex, for K problems at once,
    and their dual slacks z [K, T] (w_i > z_i marks the support).

    A fixed number of Mehrotra predictor-corrector steps of a primal-dual interior-point method
    (``_interior_point``) from w = 1/T (so Σw = 1 holds throughout), duals z = 1; each step
    solves the Newton system ``(H + diag(z/w)) Δw + Δν 1 = -r`` with one Cholesky
    factorisation, eliminating Δν through ``1ᵀΔw = 0``.

    :param hessians: [K, T, T] positive definite.
    :param linear: [K, T].
    """
    return _interior_point(hessians, linear, iters, simplex=True)


def orthant_qp_device(hessians: Tensor, linear: Tensor, iters: int) -> tuple[Tensor, Tensor]:
    """Minimisers x [K, T] of ``½ xᵀH_k x + p_kᵀx`` over x >= 0, K problems at once, and their
    dual slacks z [K, T] (x_i > z_i marks the support): the steps of ``simplex_qp_device``
    without the equality constraint, from x = z = 1, each solving ``(H + diag(z/x)) Δx = -r``.

    :param hessians: [K, T, T] positive definite.
    :param linear: [K, T].
    """
    return _interior_point(hessians, linear, iters, simplex=False)


def _interior_point(
    hessians: Tensor, linear: Tensor, iters: int, simplex: bool
) -> tuple[Tensor, Tensor]:
    """Mehrotra predictor-corrector steps for ``min ½ xᵀH x + pᵀx`` over x >= 0, with
    ``Σx = 1`` if ``simplex`` (multiplier ν); steps stop short of the orthant's boundary
    (fraction 0.99). Returns the primal x and the dual slacks z, [K, T] each.

    Written for few ops per step (44 with the simplex, 36 without): each half-step's [Δx, Δz]
    goes into one buffer in place, p + ν is kept as one tensor, and the predictor's Newton
    system is solved for its right side and for 1 together."""
    tasks = linear.shape[1]
    x0 = 1.0 / tasks if simplex else 1.0
    X = torch.stack([torch.full_like(linear, x0), torch.ones_like(linear)])  # [2, K, T]: x, z
    step = torch.empty_like(X)  # contiguous halves, so torch.compile takes the out= writes
    dx, dz = step[0], step[1]
    lin = linear.clone() if simplex else linear  # p + ν, ν = 0 at the start
    ones = torch.ones_like(linear) if simplex else None
    diagonal = hessians.diagonal(dim1=1, dim2=2)
    # minus the fractions of the step to the boundary, made on the device (no host copy)
    full, short = (torch.full((), -f, dtype=linear.dtype, device=linear.device) for f in (1, _TAU))
    for _ in range(iters):
        x, z = X[0], X[1]
        grad = torch.baddbmm(lin.unsqueeze(2), hessians, x.unsqueeze(2)).squeeze(2)  # Hx + p + ν
        minus_x = -x
        scaled = torch.diagonal_scatter(hessians, torch.addcdiv(diagonal, z, x), dim1=1, dim2=2)
        chol = torch.linalg.cholesky_ex(scaled)[0]  # of H + Z/X
        xz = x * z
        mu = xz.mean(dim=1, keepdim=True)
        # predictor (affine scaling): complementarity target 0, so the right side is the gradient
        v = v_sum = None
        if ones is not None:
            vu = _cholesky_solve(chol, torch.stack([ones, grad], dim=2))  # (H + Z/X)⁻¹ [1, grad]
            sums = vu.sum(dim=1)
            v, v_sum = vu[:, :, 0], sums[:, :1]
            _eliminate(vu[:, :, 1], sums[:, 1:], v, v_sum, dx)
        else:
            _newton(chol, grad, dx)
        torch.div(torch.addcmul(xz, z, dx), minus_x, out=dz)  # Δz = -z - (z/x) Δx
        alpha = _step_to_boundary(X, step, full)
        mu_affine = torch.addcmul(X, alpha, step).prod(dim=0).mean(dim=1, keepdim=True)
        sigma_mu = (mu_affine / mu) ** 3 * mu
        # corrector: centring plus the second-order term of the predictor
        comp = torch.addcmul(xz, dx, dz) - sigma_mu
        t = _newton(chol, torch.addcdiv(grad - z, comp, x), dx, v, v_sum)
        torch.div(torch.addcmul(comp, z, dx), minus_x, out=dz)
        alpha = _step_to_boundary(X, step, short)
        X = torch.addcmul(X, alpha, step)
        if t is not None:
            lin = torch.addcmul(lin, alpha[1], t, value=-1)
    return X[0], X[1]


def _newton(
    chol: Tensor, rhs: Tensor, out: Tensor, v: Tensor | None = None, v_sum: Tensor | None = None
) -> Tensor | None:
    """Δx into ``out`` with ``(H + Z/X) Δx = -rhs`` given the Cholesky factor ``chol`` of
    H + Z/X, returning None; with the simplex's constraint (v = (H + Z/X)⁻¹ 1 and its sum
    given), Δx with ``(H + Z/X) Δx + Δν 1 = -rhs`` and ``1ᵀΔx = 0``, returning t = -Δν."""
    u = _cholesky_solve(chol, rhs.unsqueeze(2)).squeeze(2)
    if v is None or v_sum is None:
        torch.neg(u, out=out)
        return None
    return _eliminate(u, u.sum(dim=1, keepdim=True), v, v_sum, out)


def _eliminate(u: Tensor, u_sum: Tensor, v: Tensor, v_sum: Tensor, out: Tensor) -> Tensor:
    """Δx = t v - u into ``out`` for u = (H + Z/X)⁻¹ rhs and v = (H + Z/X)⁻¹ 1 (sums given),
    with t = Σu / Σv so that 1ᵀΔx = 0; returns t = -Δν."""
    t = u_sum / v_sum
    torch.sub(t * v, u, out=out)
    return t


def _step_to_boundary(X: Tensor, step: Tensor, minus_fraction: Tensor) -> Tensor:
    """[2, K, 1]: min(1, fraction x the largest α keeping X + α step >= 0), per part (x and z)
    and row, for X > 0 and ``minus_fraction`` = -fraction, a 0-d tensor."""
    most_negative = (step / X).amin(dim=2, keepdim=True)
    return torch.div(minus_fraction, most_negative.clamp(max=minus_fraction))


# --- IMTL-G and MGDA --------------------------------------------------------------------------

_ZERO_GRADIENT = 1e-20
"""A task whose squared gradient norm is below this times the largest counts as zero
(``qp._ZERO_GRADIENT``, the host paths' ``nonzero_tasks``)."""

_IMTL_ZERO_SUM = 1e-12
"""``imtl._ZERO_SUM``: zero weights where |1ᵀA⁺n| is below this (A at unit mean diagonal)."""

MGDA_ITERS = 16
"""Interior-point steps per MGDA solve. On the tests' 120 random problems, from 14 steps every
direction was exact to rounding (cosine 1 - 1e-15 with the host's NNLS, or a norm below 1e-11
of the largest gradient where the min-norm point is 0); 10 left cosines of 1 - 2e-6 and norms
of 4e-5 where it should be 0, 8 cosines of 1 - 5e-4. 16 leave a margin.
"""

_MGDA_KKT_TOL = 1e-9
"""Relative tolerance of the optimality check of the support step (as ``qp._KKT_TOL``)."""


def jacobi_sweeps(tasks: int) -> int:
    """Sweeps of ``jacobi_eigh`` (each rotates every pair of rows once): 8 up to 12 tasks, 10
    above. On IMTL-G's test problems (8 draws of random, T > P, zero, duplicate and opposite
    tasks, float32 Gramians too) the weights matched the host's eigh to 3e-12 at T = 10 and
    7e-12 at T = 12 with 8 sweeps; at T = 16 8 left 2e-8 on one, 10 gave 2e-11; at T = 50
    (not captured) 10 gave 1e-10."""
    return 8 if tasks <= 12 else 10


def imtl_g_weights_device(
    gram: Tensor, rtol: float, jacobi: bool = False, fused: bool = False
) -> Tensor:
    """IMTL-G's weights A⁺n / 1ᵀA⁺n [T] from the Gramian, on gram's device: the transcription
    of ``imtl.imtl_g_weights``.

    The zero-gradient tasks (``nonzero_tasks``) cannot be dropped without a data-dependent
    shape, so their rows and columns of the scaled A are replaced by those of the identity:
    A becomes block-diagonal (live block, identity), its pseudo-inverse that of the live block
    next to the identity, and as their n_i are 0 their entries of A⁺n are 0 (masked to exactly
    0 besides). The identity's eigenvalues, 1, never change the cutoff: the live block has
    mean diagonal 1, so its largest eigenvalue is at least 1. The cutoff ``rtol`` times the
    largest eigenvalue and the zero-sum rule are ``torch.where`` selections. All gradients
    zero (or a Gramian that is not finite, which the host path refuses first) gives zero
    weights.

    ``torch.linalg.eigh`` is one op on every device, with no host sync visible to the
    dispatcher on the CPU, but on CUDA it does not run under graph capture (pytorch/pytorch
    #188355; refused on an H200, which left cuSOLVER unusable in the process): a captured
    update takes ``jacobi`` instead, the same eigendecomposition by sweeps of rotations
    (``jacobi_eigh``: 12 kernels per round of T/2 rotations, T - 1 rounds a sweep).

    :param gram: the Gramian G Gᵀ [T, T], float64.
    :param rtol: eigenvalues below ``rtol`` times the largest are dropped (the host's T eps).
    :param jacobi: eigendecompose by ``jacobi_eigh`` instead of ``torch.linalg.eigh``.
    :param fused: with ``jacobi``, its rotations in one Triton kernel (``fused_ip``).
    """
    diag = gram.diagonal()
    live = diag > _ZERO_GRADIENT * diag.amax()  # all False for a zero or non-finite diagonal
    m = live.to(gram.dtype)
    count = m.sum()
    scale = (diag * m).sum() / count.clamp(min=1)
    scale = torch.where(scale > 0, scale, 1.0)
    mm = m[:, None] * m[None, :]
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    a = torch.where(mm > 0, gram / scale, eye)
    vals, vecs = symmetric_eigh(a, jacobi, fused)
    absolute = vals.abs()
    keep = absolute > rtol * absolute.amax()
    v = _pseudo_inverse_times(vals, vecs, keep, torch.sqrt(a.diagonal()) * m) * m
    total = v.sum()
    ok = total.abs() >= _IMTL_ZERO_SUM
    return torch.where(ok, v / torch.where(ok, total, 1.0), 0.0)


def fairgrad_sgd_device(
    gram: Tensor, alpha: float, steps: int, lr: float, momentum: float, eps: float
) -> Tensor:
    """FairGrad's weights [T] by the official MTRL code's SGD, on gram's device: the
    transcription of ``fairgrad.fairgrad_sgd`` (``steps`` steps of SGD with ``momentum`` on
    ‖G Gᵀ w - (1/(w + eps))^(1/α)‖² from 1/T, the gradient's norm clipped to 1, w clamped to
    >= eps; the best iterate seen), its comparisons as ``torch.where`` selections. The last
    step's update, never evaluated there either, is left out."""
    w = torch.full_like(gram.diagonal(), 1.0 / gram.shape[0])
    best, best_value = w, torch.full_like(w[0], torch.inf)
    velocity = w
    for step in range(steps):
        shifted = w + eps
        power = torch.pow(shifted, -1.0 / alpha)  # (1/(w + eps))^(1/α)
        residual = gram @ w - power
        value = residual @ residual
        better = value < best_value
        best, best_value = torch.where(better, w, best), torch.where(better, value, best_value)
        if step == steps - 1:
            break
        # the derivative of the power is -(power / shifted) / α
        grad = 2.0 * (gram.T @ residual + (power / shifted) * residual / alpha)
        clip = torch.linalg.vector_norm(grad) + 1e-6
        grad = torch.where(clip > 1.0, grad / clip, grad)
        velocity = grad if step == 0 else torch.add(grad, velocity, alpha=momentum)
        w = torch.clamp(torch.sub(w, velocity, alpha=lr), min=eps)
    return best


def project_simplex_device(v: Tensor, counts: Tensor | None = None) -> Tensor:
    """The Euclidean projection of v [T] onto the probability simplex, on v's device:
    ``sdmgrad.project_onto_simplex`` (Duchi et al. 2008, with its early return for a point
    already on the simplex) with the index of the last sorted entry above the threshold taken
    by a maximum instead of ``nonzero``. ``counts``: 1, ..., T in v's dtype (made here if not
    given; a caller projecting in a loop makes it once)."""
    u = v.sort(descending=True).values
    excess = u.cumsum(0) - 1.0
    if counts is None:
        counts = torch.arange(1, v.shape[0] + 1, dtype=v.dtype, device=v.device)
    kept = torch.where(u * counts > excess, counts, 0.0).amax()  # ρ + 1
    theta = excess.gather(0, (kept - 1).long().reshape(1)) / kept
    on_simplex = (v.sum() == 1.0) & (v >= 0).all()
    return torch.where(on_simplex, v, torch.clamp(v - theta, min=0.0))


def sdmgrad_weights_device(
    gram: Tensor, w: Tensor, lamda: float, niter: int, lr: float, momentum: float
) -> tuple[Tensor, Tensor]:
    """SDMGrad's weights [T] and its next inner iterate w [T] from the Gramian and the last
    call's w, on gram's device: the transcription of ``SDMGrad.weights`` (``niter`` steps of
    projected SGD with momentum on ½ wᵀAw + λ wᵀA1/T, A the Gramian over (mean_i √(A_ii +
    1e-4))²)."""
    tasks = gram.shape[0]
    a = gram / torch.sqrt(gram.diagonal() + 1e-4).mean() ** 2
    pull = lamda * a.mean(dim=1)
    counts = torch.arange(1, tasks + 1, dtype=gram.dtype, device=gram.device)
    velocity = w
    for step in range(niter):
        grad = a @ w + pull
        velocity = grad if step == 0 else torch.add(grad, velocity, alpha=momentum)
        w = project_simplex_device(torch.sub(w, velocity, alpha=lr), counts)
    return (w + lamda / tasks) / (1 + lamda), w


def _pseudo_inverse_times(vals: Tensor, vecs: Tensor, keep: Tensor, rhs: Tensor) -> Tensor:
    """A⁺ rhs for A = V diag(vals) Vᵀ, over the eigenvalues ``keep`` marks (the others count
    as zero), branch-free."""
    return vecs @ torch.where(keep, (vecs.T @ rhs) / torch.where(keep, vals, 1.0), 0.0)


def symmetric_eigh(a: Tensor, jacobi: bool = False, fused: bool = False) -> tuple[Tensor, Tensor]:
    """Eigenvalues [T] and eigenvectors [T, T] of ``(a + aᵀ) / 2``: ``torch.linalg.eigh``
    (ascending), or with ``jacobi`` ``jacobi_eigh`` (unsorted; what a CUDA graph can capture),
    its rotations in one Triton kernel with ``fused``."""
    symmetric = 0.5 * (a + a.T)
    return jacobi_eigh(symmetric, fused=fused) if jacobi else torch.linalg.eigh(symmetric)


def config_weights_device(
    gram: Tensor, eps: float, jacobi: bool = False, fused: bool = False
) -> Tensor:
    """ConFIG's weights [T] from the Gramian, on gram's device: the transcription of
    ``conflict_free.config_weights`` (w0 = D C⁺ 1 with C the cosine matrix, scaled to the sum
    of the projections). A zero gradient's row and column of C are zero, so its eigenvalue is
    dropped with the null space and its weight is 0; with ``jacobi`` (a captured update) the
    eigendecomposition is ``jacobi_eigh``, as IMTL-G's (``imtl_g_weights_device``).

    :param eps: the precision of the gradients: eigenvalues of C up to T eps times the
        largest count as zero, as on the host.
    """
    sq_norms = gram.diagonal()
    live = sq_norms > 0
    inv_norms = torch.where(live, torch.rsqrt(torch.where(live, sq_norms, 1.0)), 0.0)
    cosines = gram * inv_norms[:, None] * inv_norms[None, :]
    vals, vecs = symmetric_eigh(cosines, jacobi, fused)
    keep = vals > vals.amax().clamp(min=0) * len(gram) * eps
    w0 = inv_norms * _pseudo_inverse_times(vals, vecs, keep, torch.ones_like(sq_norms))
    gram_w0 = gram @ w0
    sq_length = w0 @ gram_w0
    ok = sq_length > 0  # else every gradient is zero, or 1 is orthogonal to the span
    return torch.where(ok, w0 * (gram_w0.sum() / torch.where(ok, sq_length, 1.0)), 0.0)


def aligned_mtl_weights_device(
    gram: Tensor, scale_mode: str, eps: float, jacobi: bool = False, fused: bool = False
) -> Tensor:
    """Aligned-MTL's weights B 1 [T] from the Gramian, on gram's device: the transcription of
    ``aligned_mtl.aligned_mtl_transform`` (B = sqrt(s) V Λ^-1/2 Vᵀ over the eigenvalues above
    T eps λ_max; s their smallest, lower median or mean for ``min``, ``median``, ``rmse``; an
    all-zero Gramian gives B = I). The Gramian is divided by its mean diagonal first, which
    leaves B as it is (s and Λ scale alike); with ``jacobi`` (a captured update) the
    eigendecomposition is ``jacobi_eigh``, whose eigenvalues come unsorted, so the median
    sorts them.
    """
    scale = gram.diagonal().mean()
    scale = torch.where(scale > 0, scale, 1.0)
    vals, vecs = symmetric_eigh(gram / scale, jacobi, fused)
    keep = vals > vals.amax().clamp(min=0) * len(gram) * eps
    kept = keep.sum()
    if scale_mode == "min":
        s = torch.where(keep, vals, torch.inf).amin()
    elif scale_mode == "median":
        ascending = torch.where(keep, vals, torch.inf).sort().values
        s = ascending.gather(0, ((kept - 1) // 2).clamp(min=0).reshape(1))[0]
    else:
        s = torch.where(keep, vals, 0.0).sum() / kept.clamp(min=1)
    inv_sqrt = torch.where(keep, torch.rsqrt(torch.where(keep, vals, 1.0)), 0.0)
    s = torch.where(kept > 0, s, 1.0)
    weights = torch.sqrt(s) * (vecs @ (inv_sqrt * vecs.sum(dim=0)))
    return torch.where(kept > 0, weights, 1.0)  # B = I: the sum of the gradients


def jacobi_eigh(a: Tensor, sweeps: int | None = None, fused: bool = False) -> tuple[Tensor, Tensor]:
    """Eigenvalues [T] and eigenvectors [T, T] (columns) of a symmetric ``a`` [T, T] by
    Jacobi rotations, in a fixed sequence of tensor ops: unlike ``torch.linalg.eigh``
    (cuSOLVER), it can be captured in a CUDA graph. Unsorted.

    Each round rotates T/2 disjoint pairs of rows and columns at once (a round-robin of the
    pairs, T - 1 rounds a sweep; an odd T gets a zero row and column, which no rotation
    touches), each by the angle that zeroes its off-diagonal entry, |θ| <= π/4: a round is one
    orthogonal J, A <- Jᵀ A J and V <- V J, 12 kernels. Both members of a pair read the
    same entries, so J is orthogonal to rounding whatever the data. With ``fused`` every
    round runs in one Triton kernel (``fused_ip.jacobi_eigh_fused``, up to 16 tasks).
    """
    tasks = a.shape[0]
    sweeps = jacobi_sweeps(tasks) if sweeps is None else sweeps
    if fused:
        from mtrl.surgery.aggregators.fused_ip import jacobi_eigh_fused

        return jacobi_eigh_fused(a, sweeps)
    n = tasks + tasks % 2
    rounds = n - 1
    A = torch.nn.functional.pad(a, (0, n - tasks, 0, n - tasks))
    lo, hi, basis = _round_robin(n, a.device, a.dtype)
    # per round: the flat positions of A[lo, hi], A[hi, hi] and A[lo, lo] for every row
    positions = torch.cat([lo * n + hi, hi * (n + 1), lo * (n + 1)], dim=1)  # [rounds, 3n]
    two = torch.full((), 2.0, dtype=a.dtype, device=a.device)
    # cos(θ - π/2) = sin θ: each row's cos θ and sin θ in one op
    minus_shift = torch.arange(2, dtype=a.dtype, device=a.device) * (-math.pi / 2)
    V = torch.eye(n, dtype=a.dtype, device=a.device)
    for _ in range(sweeps):
        for r in range(rounds):
            off, upper, lower = A.reshape(-1).take(positions[r]).view(3, n)
            diff = upper - lower
            double_theta = torch.atan2(off * torch.copysign(two, diff), diff.abs())
            cos_sin = torch.cos(torch.add(minus_shift, double_theta[:, None], alpha=0.5))
            # row i of J: cos θ_i on the diagonal, ± sin θ_i at its pair (one of the two
            # terms is 0, so J's entries are exact); one batched product
            J = torch.bmm(cos_sin.unsqueeze(1), basis[r]).view(n, n)
            A = J.T @ A @ J
            V = V @ J
    return A.diagonal()[:tasks], V[:tasks, :tasks]


def _round_robin(n: int, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor]:
    """The pairs of rows that ``jacobi_eigh`` rotates together, for an even n, built on the
    device (no host copy, so inside a CUDA-graph capture too): in round r the rows i, j < n - 1
    with i + j = r (mod n - 1) pair up, and the row left over (2i = r) pairs with n - 1. Returns
    each row's pair as its lower and higher row [n - 1, n] (long) and, per round and row, the
    two rows [n - 1, n, 2, n] that the row's cos θ and sin θ scale into its row of J: the
    identity's, and the signed permutation's that puts sin θ at (lo, hi) and -sin θ at
    (hi, lo)."""
    rounds = n - 1
    r = torch.arange(rounds, device=device)[:, None]
    i = torch.arange(n, device=device)[None, :]
    partner = torch.remainder(r - i, rounds)
    alone = r * (n // 2) % rounds  # 2 alone = r (mod n - 1): n / 2 is 2's inverse there
    partner = torch.where(partner == i, n - 1, partner)
    partner = torch.where(i == n - 1, alone.expand(rounds, n), partner)
    lo, hi = torch.minimum(i, partner), torch.maximum(i, partner)
    sign = torch.where(i == lo, 1.0, -1.0).to(dtype)
    pairing = (partner[:, :, None] == i[:, None, :]).to(dtype) * sign[:, :, None]
    identity = (i[:, :, None] == i[:, None, :]).to(dtype).expand(rounds, n, n)
    return lo, hi, torch.stack([identity, pairing], dim=2)


def mgda_weights_device(gram: Tensor, iters: int = MGDA_ITERS, fused: bool = False) -> Tensor:
    """MGDA's weights [T]: the minimiser over the simplex of wᵀA w (A = G Gᵀ), on gram's device.

    A is scaled to unit mean diagonal (the minimiser does not depend on the scale) and solved
    by ``iters`` interior-point steps (``simplex_qp_device``, one problem, ``_REG`` added to the
    diagonal); then the KKT system on candidate supports the steps found (w_i > z_i, and
    10 w_i > z_i) is solved exactly (``_min_norm_on_support``) and the first candidate that
    checks out as optimal (w >= 0, every reduced cost (A w)_i - wᵀA w >= 0, a successful
    factorisation) replaces the interior-point answer, which makes the answer exact to
    rounding wherever a candidate support is right (all branch-free ``torch.where``). A zero
    Gramian, or one that is not finite (the host path refuses it first), gives the uniform
    weights, as the host does for the former.
    """
    if fused:  # the whole solve in one Triton kernel launch (``fused_ip``), for GPUs
        from mtrl.surgery.aggregators.fused_ip import mgda_weights_fused

        return mgda_weights_fused(gram, iters)
    tasks = gram.shape[0]
    uniform = torch.full((tasks,), 1.0 / tasks, dtype=gram.dtype, device=gram.device)
    scale = gram.diagonal().mean()
    valid = (scale > 0) & (scale < torch.inf)
    a = torch.where(valid, gram / torch.where(valid, scale, 1.0), 0.0)
    a = torch.nan_to_num(0.5 * (a + a.T), nan=0.0, posinf=0.0, neginf=0.0)
    eye = torch.eye(tasks, dtype=gram.dtype, device=gram.device)
    hessian = (a + _REG * eye).unsqueeze(0)
    W, Z = simplex_qp_device(hessian, torch.zeros_like(uniform).unsqueeze(0), iters)
    w_ip = W[0].clamp(min=0)
    w_ip = w_ip / w_ip.sum()
    # two candidate supports: w_i > z_i, and the wider 10 w_i > z_i (a task whose weight is
    # tiny next to the others' converges slowly, e.g. one gradient 1e6 times the rest)
    exact, optimal = _min_norm_on_support(a, torch.stack([W[0] > Z[0], 10 * W[0] > Z[0]]))
    w = _first_optimal(exact, optimal, w_ip).clamp(min=0)
    w = w / w.sum()
    return torch.where(valid, w, uniform)


def _min_norm_on_support(a: Tensor, supports: Tensor) -> tuple[Tensor, Tensor]:
    """The minimisers of wᵀA w over the simplex restricted to each support S [C, T] (bool),
    and whether each is optimal on the whole simplex: candidates [2C, T] and [2C] bools.

    On S the KKT system ``A_SS w_S + ν 1 = 0, Σ w_S = 1`` reads ``(A_SS + 11ᵀ) w_S = (1 - ν) 1``,
    so w_S is (A_SS + 11ᵀ)⁻¹ 1 over its sum. For each support it is solved as it is (exact,
    but singular for duplicate tasks on S: candidates 0..C-1) and with ``_REG`` on the
    diagonal (positive definite; the direction wᵀG does not depend on how w splits between
    duplicates, but the regulariser biases w where some gradients are ~1e-6 times the largest:
    candidates C..2C-1). A candidate is optimal if w >= 0 and no reduced cost
    (A w)_i - wᵀA w is negative, to the host's relative tolerance 1e-9, and its factorisation
    succeeded.
    """
    m = supports.to(a.dtype)
    mm = m[:, :, None] * m[:, None, :]
    base = (a + 1.0) * mm + torch.diag_embed(1 - m)
    matrices = torch.cat([base, base + _REG * torch.diag_embed(m)])
    m = torch.cat([m, m])
    u, factored = _spd_solve(matrices, m.unsqueeze(2))
    u = u.squeeze(2) * m
    w = u / u.sum(dim=1, keepdim=True)
    aw = w @ a
    value = (aw * w).sum(dim=1, keepdim=True)
    tol = _MGDA_KKT_TOL * a.diagonal().amax()
    feasible = (w >= -_MGDA_KKT_TOL) & (aw - value >= -tol)
    optimal = feasible.all(dim=1) & torch.isfinite(w).all(dim=1) & factored
    return w, optimal


# --- UPGrad and DualProj ----------------------------------------------------------------------

DUAL_CONE_ITERS = 20
"""Interior-point steps per dual-cone projection (UPGrad, DualProj). On the tests' 240 random
problems (UPGrad and DualProj, reg_eps 1e-4 and 0) 20 steps gave directions within 2e-9 of
the largest gradient of the host's exact ones (cosine 1 - 1e-15 where they are not ~0); 16
left 3e-7 (one of T = 50 projections unconfirmed by the support step), 12 left 1.5e-4."""


def dual_cone_weights_device(
    gram: Tensor,
    targets: Tensor,
    reg_eps: float,
    norm_eps: float,
    iters: int = DUAL_CONE_ITERS,
    fused: bool = False,
) -> Tensor:
    """For each row u of ``targets`` [K, T] the v [K, T] minimising vᵀA'v subject to v >= u,
    A' = A / tr(A) + reg_eps I (torchjd's matrix, ``upgrad.dual_gramian``): the device
    transcription of ``qp.project_dual_cone`` on that matrix.

    With v = u + x it is the QP min ½ xᵀH x + (H u)ᵀx over x >= 0, H = A' scaled to about unit
    mean diagonal (the minimiser does not depend on the scale) plus ``_REG`` on the diagonal
    (the host's tie-break for a singular A'): ``iters`` interior-point steps for all K problems
    at once (``orthant_qp_device``), then the KKT system ``H_SS x_S = -(H u)_S`` on the
    supports they found (x_i > z_i, and the wider 10 x_i > z_i), kept where it checks out as
    optimal (x >= 0, every reduced cost (H v)_i >= 0 off S), which makes the answer exact to
    rounding there. Zero-gradient tasks (the host's ``nonzero_tasks``) get the rows and columns
    of the identity and no linear term, so x_i = 0 as on the host. tr(A) below ``norm_eps``, or
    not finite, gives A' = reg_eps I, whose projection is u itself (as on the host for the
    former; the host refuses the latter first). With ``fused`` the whole solve is one Triton
    kernel launch (``fused_ip``), for GPUs.
    """
    if fused:
        from mtrl.surgery.aggregators.fused_ip import dual_cone_weights_fused

        return dual_cone_weights_fused(gram, targets, reg_eps, norm_eps, iters)
    tasks = gram.shape[0]
    eye = torch.eye(tasks, dtype=gram.dtype, device=gram.device)
    trace = gram.diagonal().sum()
    valid = (trace >= norm_eps) & (trace > 0) & (trace < torch.inf)
    scaled = torch.where(valid, gram / torch.where(valid, trace, 1.0), 0.0)
    scaled = torch.nan_to_num(0.5 * (scaled + scaled.T), nan=0.0, posinf=0.0, neginf=0.0)
    scaled = (scaled + reg_eps * eye) * tasks  # unit mean diagonal for a trace-normalised A
    diag = scaled.diagonal()
    live = diag > _ZERO_GRADIENT * diag.amax()
    # unit diagonal (v = D^-1/2 y): the tie-break is then relative to each task's own scale
    root = torch.sqrt(torch.where(live, diag, 1.0))
    mm = live[:, None] & live[None, :]
    hessian = torch.where(mm, scaled / (root[:, None] * root[None, :]), eye) + _REG * eye
    linear = torch.where(live, (targets * root) @ hessian, 0.0)  # H u in y; H symmetric
    X, Z = orthant_qp_device(hessian.expand(targets.shape[0], tasks, tasks), linear, iters)
    supports = torch.stack([X > Z, 10 * X > Z], dim=1)  # [K, 2, T]
    exact, optimal = _orthant_on_supports(hessian, linear.unsqueeze(1), supports)
    x = _first_optimal(exact, optimal, X.clamp(min=0), dim=1)
    x = torch.where(live & (diag.amax() > 0), x.clamp(min=0) / root, 0.0)
    return targets + x


def _orthant_on_supports(
    hessian: Tensor, linear: Tensor, supports: Tensor
) -> tuple[Tensor, Tensor]:
    """For each candidate support S [K, C, T] (bool): the minimiser x [K, C, T] of
    ``½ xᵀH x + pᵀx`` with x = 0 off S (``H_SS x_S = -p_S``), and whether it is optimal over
    x >= 0 ([K, C] bools): x >= 0 and every reduced cost (H x + p)_i >= 0 off S, to 1e-9 of
    the largest diagonal entry, and a successful factorisation."""
    m = supports.to(hessian.dtype)
    mm = m.unsqueeze(-1) * m.unsqueeze(-2)
    x, factored = _spd_solve(hessian * mm + torch.diag_embed(1 - m), (-linear * m).unsqueeze(-1))
    x = x.squeeze(-1) * m
    reduced = x @ hessian + linear
    tol = _MGDA_KKT_TOL * hessian.diagonal().amax()
    feasible = (x >= -tol) & (supports | (reduced >= -tol))
    optimal = feasible.all(dim=-1) & torch.isfinite(x).all(dim=-1) & factored
    return x, optimal
