"""MGDA: the min-norm point of the hull (KKT, random points, quadprog), torchjd, edge cases."""

import numpy as np
import pytest
import torch
from matrices import SIZES, random_G
from qpsolvers import solve_qp
from torchjd.aggregation import MGDA as TorchJDMGDA

from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, get_aggregator
from mtrl.surgery.aggregators import qp
from mtrl.surgery.taskgrads import TaskGradients


def singular_G(tasks: int, params: int, seed: int) -> torch.Tensor:
    """Random rows with a duplicated row, a zero row and a dependent row (as T allows)."""
    G = random_G(tasks, params, seed)
    G[1] = G[0]
    if tasks > 2:
        G[2] = 0.0
    if tasks > 4:
        G[3] = G[0] - 2.0 * G[4]
    return G


def mgda(G: torch.Tensor):
    return get_aggregator("mgda").aggregate(G)


def assert_kkt(G: torch.Tensor, w: torch.Tensor) -> None:
    """w on the simplex with (A w)_i >= wᵀ A w for all i, equality where w_i > 0: the optimality
    conditions of min wᵀ A w over the simplex (convex, so sufficient)."""
    A = G @ G.T
    scale = A.diagonal().max()
    Aw, value = A @ w, w @ A @ w
    assert (w >= 0).all() and abs(w.sum() - 1) < 1e-12
    assert (Aw >= value - 1e-12 * scale).all()
    support = w > 1e-9
    assert torch.allclose(Aw[support], value.expand(int(support.sum())), atol=1e-11 * scale)


@pytest.mark.parametrize(("tasks", "params"), SIZES)
def test_kkt_conditions_and_no_shorter_hull_point(tasks, params):
    gen = np.random.default_rng(tasks * 1000 + params)
    for seed in range(3):
        for G in (random_G(tasks, params, seed), singular_G(tasks, params, seed)):
            result = mgda(G)
            assert_kkt(G, result.weights)
            assert torch.allclose(result.direction, result.weights @ G, atol=1e-12)
            points = torch.from_numpy(gen.dirichlet(np.full(tasks, 0.3), size=500)) @ G
            norm = result.direction.norm()
            assert (points.norm(dim=1) >= norm - 1e-12 * G.norm(dim=1).max()).all()


@pytest.mark.parametrize(("tasks", "params"), SIZES)
def test_matches_torchjd_frank_wolfe_as_far_as_it_converges(tasks, params):
    # torchjd runs Frank-Wolfe (stops when the step is < 1e-3, at most 100 steps): its direction
    # is only near the minimiser (up to 3% of the longest gradient seen here). The exact
    # statement: d*, the min-norm point of a convex set, satisfies
    # ‖d - d*‖² <= ‖d‖² - ‖d*‖² for every d in the set, so torchjd's point is never shorter
    # and its distance to ours is bounded by its own suboptimality.
    for seed in range(3):
        G = random_G(tasks, params, seed)
        ours = mgda(G).direction
        for ref in (TorchJDMGDA(), TorchJDMGDA(epsilon=1e-9, max_iters=1000)):
            theirs = ref(G)
            scale = G.norm(dim=1).max() ** 2
            gap = theirs @ theirs - ours @ ours
            assert gap >= -1e-12 * scale
            assert (theirs - ours) @ (theirs - ours) <= gap + 1e-12 * scale
            assert (theirs - ours).norm() <= 0.05 * scale.sqrt()


@pytest.mark.parametrize(("tasks", "params"), [(t, p) for t, p in SIZES if t <= p])
def test_matches_an_exact_qp_solver(tasks, params):
    # quadprog (Goldfarb-Idnani) on the simplex; A is positive definite when T <= P (1e-12 I
    # only guards its Cholesky): the weights agree to rounding, relative to the gradients.
    for seed in range(3):
        G = random_G(tasks, params, seed)
        A = (G @ G.T).numpy()
        scaled = A / np.trace(A)
        ref = solve_qp(
            scaled + 1e-12 * np.eye(tasks),
            np.zeros(tasks),
            A=np.ones((1, tasks)),
            b=np.ones(1),
            lb=np.zeros(tasks),
            solver="quadprog",
        )
        result = mgda(G)
        assert np.abs(result.weights.numpy() - ref).max() < 1e-7
        assert (result.direction - torch.from_numpy(ref) @ G).norm() < 1e-8 * G.norm(dim=1).max()


def test_hand_derived_cases():
    agg = get_aggregator("mgda")
    orthogonal = torch.tensor([[2.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    assert torch.allclose(agg(orthogonal), torch.tensor([1.0, 1.0], dtype=torch.float64))
    # g2 = 3 g1: the hull is the segment [g1, 3 g1], shortest at g1 (weights 1, 0).
    parallel = torch.tensor([[1.0, 2.0], [3.0, 6.0]], dtype=torch.float64)
    result = agg.aggregate(parallel)
    assert torch.allclose(result.weights, torch.tensor([1.0, 0.0], dtype=torch.float64))
    # The hull of g and -g holds 0: a Pareto-stationary point, the direction is zero.
    opposite = torch.tensor([[1.0, -2.0, 0.5], [-1.0, 2.0, -0.5]], dtype=torch.float64)
    assert agg(opposite).norm() < 1e-12
    # Obtuse pair: min over c of ‖c g1 + (1 - c) g2‖², c = (g2·g2 - g1·g2) / ‖g1 - g2‖².
    g1, g2 = torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 2.0])
    c = (g2 @ g2 - g1 @ g2) / (g1 - g2).square().sum()
    assert torch.allclose(agg(torch.stack([g1, g2])), c * g1 + (1 - c) * g2, atol=1e-6)


def test_scale_and_degenerate_inputs():
    agg = get_aggregator("mgda")
    g = torch.tensor([[0.5, -1.0, 2.0]])
    assert torch.equal(agg(g), g[0])  # T = 1: that gradient
    for dtype in (torch.float32, torch.float64):
        same = g.to(dtype).repeat(6, 1)  # identical tasks: that gradient (weights sum to 1)
        assert torch.allclose(agg(same), same[0], rtol=1e-5 if dtype == torch.float32 else 1e-12)
        assert agg(same).dtype == dtype
    assert torch.equal(agg(torch.zeros(4, 3)), torch.zeros(3))
    with_zero = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 1.0]])
    assert agg(with_zero).abs().max() < 1e-30  # the zero gradient is the hull's min
    tiny, huge = random_G(5, 7, 0) * 1e-150, random_G(5, 7, 0) * 1e150
    base = agg(random_G(5, 7, 0))
    assert torch.allclose(agg(tiny) * 1e150, base) and torch.allclose(agg(huge) / 1e150, base)


def test_a_wrong_nnls_answer_falls_back_to_bvls(monkeypatch):
    # scipy's NNLS has had regressions (1.12-1.15): an answer failing the KKT check is replaced.
    monkeypatch.setattr(qp, "nnls", lambda matrix, rhs, maxiter: (np.zeros(matrix.shape[1]), 0.0))
    for G in (random_G(10, 20, 0), singular_G(10, 3, 1)):
        assert_kkt(G, mgda(G).weights)


def test_parameter_blocks_give_the_flat_result():
    G = random_G(6, 30, 1)
    blocks = TaskGradients([G[:, :10].reshape(6, 2, 5), G[:, 10:]])
    direction = get_aggregator("mgda")(blocks)
    flat = torch.cat([direction[0].reshape(-1), direction[1]])
    assert torch.allclose(flat, get_aggregator("mgda")(G), atol=1e-12)


def test_non_finite_gradient_is_named():
    G = random_G(4, 5, 2)
    G[2, 3] = float("nan")
    agg = get_aggregator("mgda")
    agg.task_names = ["reach", "push", "pick", "door"]
    with pytest.raises(NonFiniteGradientError, match="pick"):
        agg(G)
    G[2, 3] = float("inf")
    with pytest.raises(NonFiniteGradientError):
        agg(G)


def test_mgda_takes_no_options():
    with pytest.raises(MtrlError, match=r"^aggregator 'mgda' has no option 'epsilon'[^\n]*$"):
        get_aggregator("mgda", epsilon=1e-3)
