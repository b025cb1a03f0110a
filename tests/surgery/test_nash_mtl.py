"""Nash-MTL against torchjd's port of the official code (cvxpy + ECOS) and its defining property.

Tolerance against torchjd: 1e-5 relative to max α. ECOS stops at ~1e-8 accuracy and the
reference's loop stops when a step is below 1e-6 (absolute, keeping the older iterate), so two
correct solvers of the same subproblems agree to ~1e-6 of α's scale (observed: <= 2e-6 on an
ill-conditioned T=10, P=3 case, ~3e-8 otherwise). Gradients here are unit-scale: at norms
below ~1e-2 ECOS stops at its iteration limit, far from the solution (see the docstring).
T = 50 with P <= 20 is left out: no direction improves all 50 tasks, and ECOS returns an
``optimal_inaccurate`` point instead of reporting the problem infeasible (here: α kept).
"""

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torchjd.aggregation import NashMTL as TorchJDNashMTL

from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, get_aggregator
from mtrl.surgery.aggregators import nash_mtl


def _matrix(tasks: int, params: int, seed: int) -> torch.Tensor:
    return torch.randn(
        tasks, params, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )


def _reference(tasks: int, **options):
    return TorchJDNashMTL(n_tasks=tasks, **options)


def _run_reference(ref, G: torch.Tensor) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # cvxpy: "not DPP", "solution may be inaccurate"
        return ref(G)


CASES = [(2, 3), (2, 20), (2, 200), (5, 3), (5, 20), (5, 200), (10, 3), (10, 20), (10, 200)]
CASES += [(50, 200)]


@pytest.mark.parametrize(("tasks", "params"), CASES)
def test_matches_torchjd(tasks, params):
    for seed in range(2 if tasks == 50 else 3):
        G = _matrix(tasks, params, seed)
        ref, ours = _reference(tasks), get_aggregator("nash-mtl")
        expected = _run_reference(ref, G)
        result = ours.aggregate(G)
        alpha_ref = ref.weighting.prvs_alpha
        np.testing.assert_allclose(ours.alpha, alpha_ref, rtol=0, atol=1e-5 * alpha_ref.max())
        scale = float(expected.norm())
        torch.testing.assert_close(result.direction, expected, rtol=0, atol=1e-5 * scale)
        assert float(result.direction.norm()) <= 1.0 + 1e-12  # max_norm = 1


@pytest.mark.parametrize(
    ("tasks", "params", "seed"),
    [(10, 3, 0), (10, 3, 1), (5, 20, 2), (10, 20, 3)],
    ids=["infeasible", "infeasible2", "unbounded", "unbounded2"],
)
def test_keeps_the_weights_where_the_reference_finds_no_solution(tasks, params, seed):
    """Infeasible (no direction improves all tasks: T > P) or unbounded first subproblem (a task
    conflicting with the sum of gradients at α = 1): the reference keeps α = 1."""
    G = _matrix(tasks, params, seed)
    ref, ours = _reference(tasks, max_norm=0.0), get_aggregator("nash-mtl", max_norm=0.0)
    expected = _run_reference(ref, G)
    assert ref.weighting.prob.status in ("infeasible", "unbounded")
    direction = ours(G)
    assert np.array_equal(ours.alpha, np.ones(tasks))
    torch.testing.assert_close(expected, G.sum(0))
    torch.testing.assert_close(direction, expected)


def test_sequence_with_reused_weights_matches_torchjd():
    """State across calls: warm starts from the last α, and update_weights_every=2 reuses α on
    every other call (clipped with that call's G)."""
    base = _matrix(6, 40, 0)
    ref = _reference(6, update_weights_every=2)
    ours = get_aggregator("nash-mtl", update_weights_every=2)
    for call in range(6):
        G = base + 0.3 * _matrix(6, 40, 100 + call)
        expected = _run_reference(ref, G)
        torch.testing.assert_close(ours(G), expected, rtol=0, atol=1e-5 * float(expected.norm()))
    assert ours.step == 6


@pytest.mark.parametrize(
    ("tasks", "params", "scale"), [(3, 5, 1.0), (10, 30, 1e-4), (50, 200, 1e3)]
)
def test_defining_property(tasks, params, scale):
    """At the solution α_i (G Gᵀ α)_i = 1 for every task, at any gradient scale."""
    for seed in range(3):
        G = scale * _matrix(tasks, params, seed)
        agg = get_aggregator("nash-mtl", max_norm=0.0)
        result = agg.aggregate(G)
        alpha = result.weights.numpy()
        assert np.all(alpha > 0)
        np.testing.assert_allclose(alpha * (result.gram.numpy() @ alpha), 1.0, rtol=0, atol=1e-6)


def test_max_norm_clips_like_clip_grad_norm():
    G = _matrix(4, 10, 1)
    free = get_aggregator("nash-mtl", max_norm=0.0)(G)
    for max_norm in (0.5, 1e6):
        clipped = get_aggregator("nash-mtl", max_norm=max_norm)(G)
        coef = min(1.0, max_norm / (float(free.norm()) + 1e-6))
        torch.testing.assert_close(clipped, coef * free, rtol=1e-12, atol=0)


def test_identical_gradients():
    g = _matrix(1, 7, 0)[0]
    G = g.repeat(4, 1)
    agg = get_aggregator("nash-mtl", max_norm=0.0)
    # the reference's stopping test holds at the initial α = 1: the sum
    torch.testing.assert_close(agg(G), 4 * g)
    agg.load_state_dict({"step": 1, "alpha": [0.3, 1.0, 2.0, 0.5]})
    torch.testing.assert_close(agg(G), 2 * g / g.norm(), rtol=1e-7, atol=0)
    clipped = get_aggregator("nash-mtl")(G)  # max_norm = 1
    torch.testing.assert_close(clipped, 4 * g / (4 * g.norm() + 1e-6))


def test_keeps_the_last_weights_when_no_direction_improves_every_task():
    G = _matrix(3, 8, 0)
    agg = get_aggregator("nash-mtl", max_norm=0.0)
    agg(G)
    alpha = agg.alpha.copy()
    opposed = torch.stack([G[0], -G[0], G[1]])
    torch.testing.assert_close(agg.aggregate(opposed).weights, torch.from_numpy(alpha))


def test_single_task_zero_and_non_finite_gradients():
    g = _matrix(1, 5, 0)
    assert torch.equal(get_aggregator("nash-mtl")(g), g[0])
    G = _matrix(3, 6, 1)
    G[1] = 0.0  # infeasible: the weights stay 1
    assert torch.isfinite(get_aggregator("nash-mtl")(G)).all()
    assert torch.equal(get_aggregator("nash-mtl")(torch.zeros(3, 4)), torch.zeros(4))
    G[2, 0] = float("nan")
    with pytest.raises(NonFiniteGradientError, match="task 2"):
        get_aggregator("nash-mtl")(G)


@pytest.mark.parametrize(
    "options",
    [{"max_norm": "abc"}, {"max_norm": -1.0}, {"update_weights_every": 0}, {"optim_niter": 1.5}],
)
def test_bad_options_are_one_line_errors(options):
    with pytest.raises(MtrlError) as info:
        get_aggregator("nash-mtl", **options)
    assert "\n" not in str(info.value)
    assert next(iter(options)) in str(info.value)


def test_state_round_trip_through_a_checkpoint():
    base = _matrix(5, 30, 2)
    inputs = [base + 0.2 * _matrix(5, 30, 10 + k) for k in range(6)]
    agg = get_aggregator("nash-mtl", update_weights_every=2)
    for G in inputs[:3]:
        agg(G)
    buffer = io.BytesIO()
    torch.save(agg.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    resumed = get_aggregator("nash-mtl", update_weights_every=2)
    resumed.load_state_dict(state)
    for G in inputs[3:]:
        assert torch.equal(resumed(G), agg(G))


@pytest.mark.timeout(60)
def test_gradients_of_very_different_scales():
    """A real critic Gramian (cheap16-scaled: two tasks with 30x rewards, norms 5e5 apart in
    the Gramian's diagonal) once gave NaN weights and, on other seeds, a solver that never
    returned: solved in rescaled coordinates, α is finite and feasible (α_i (A α)_i >= 1) and
    down-weights the loud tasks, as the reference (cvxpy/ECOS) does."""
    path = Path(__file__).resolve().parents[1] / "data" / "nash_mtl_scaled_gramian.txt"
    gram = torch.from_numpy(np.loadtxt(path))
    agg = get_aggregator("nash-mtl", max_norm=0.0)
    for _ in range(2):
        weights = agg.weights(gram.clone())
        assert torch.isfinite(weights).all() and (weights > 0).all()
        alpha = weights.numpy()
        assert (alpha * (gram.numpy() @ alpha)).min() > 1 - 1e-6
        assert alpha[:2].max() < alpha[2:].min()  # the two loud tasks weigh least


def test_a_start_that_is_not_strictly_feasible_gives_no_solution():
    a = np.array([[1.0, -1.0], [-1.0, 1.0]])
    for start in (np.array([np.nan, 1.0]), np.array([1.0, 1.0])):  # NaN; a x = 0
        assert nash_mtl.solve_subproblem(a, np.ones(2), start) is None
