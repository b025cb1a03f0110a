"""Aggregators on hand-derived cases, reference values and properties."""

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from mtrl.errors import MtrlError
from mtrl.surgery import (
    NonFiniteGradientError,
    get_aggregator,
    gradient_diagnostics,
    list_aggregators,
)

J = torch.tensor([[-4.0, 1.0, 1.0], [6.0, 1.0, 1.0]])


def test_registry_lists_the_methods():
    assert {"mean", "sum", "pcgrad", "cagrad"} <= set(list_aggregators())


def test_unknown_name_lists_registered():
    with pytest.raises(MtrlError, match=r"unknown aggregator 'pcgard'.*did you mean: pcgrad.*"):
        get_aggregator("pcgard")


def test_unknown_option_is_named():
    with pytest.raises(MtrlError, match=r"has no option 'alpha'.*options: c, rescale"):
        get_aggregator("cagrad", alpha=0.5)


def test_mean_and_sum():
    assert torch.allclose(get_aggregator("mean")(J), torch.tensor([1.0, 1.0, 1.0]))
    assert torch.allclose(get_aggregator("sum")(J), torch.tensor([2.0, 2.0, 2.0]))


def test_pcgrad_published_reference():
    direction = get_aggregator("pcgrad", seed=0)(J)
    assert torch.allclose(direction, torch.tensor([0.5848, 3.8012, 3.8012]), atol=1e-4)
    mean = get_aggregator("pcgrad", reduction="mean", seed=0)(J)
    assert torch.allclose(mean, direction / 2, atol=1e-6)


def test_pcgrad_two_tasks_no_conflict_with_either():
    gen = torch.Generator().manual_seed(0)
    for _ in range(50):
        G = torch.randn(2, 7, generator=gen, dtype=torch.float64)
        d = get_aggregator("pcgrad", seed=1)(G)
        assert (G @ d >= -1e-10).all()


def test_pcgrad_leaves_non_conflicting_gradients_alone():
    G = torch.tensor([[1.0, 0.0, 0.0], [0.5, 1.0, 0.0], [0.0, 0.2, 3.0]])
    assert torch.allclose(get_aggregator("pcgrad", seed=0)(G), G.sum(0))


def _pcgrad_reference(G: torch.Tensor, order: np.ndarray) -> torch.Tensor:
    """Algorithm 1 written directly on the gradient vectors."""
    out = []
    for i in range(G.shape[0]):
        g = G[i].clone()
        for j in order[i]:
            dot = g @ G[j]
            if dot < 0:
                g = g - dot / (G[j] @ G[j]) * G[j]
        out.append(g)
    return torch.stack(out).sum(0)


def test_pcgrad_matches_vector_algorithm_with_same_order():
    gen = torch.Generator().manual_seed(3)
    G = torch.randn(6, 20, generator=gen, dtype=torch.float64)
    agg = get_aggregator("pcgrad", seed=5)
    order = get_aggregator("pcgrad", seed=5).random_order(6)
    for row in range(6):
        assert sorted(order[row].tolist()) == [t for t in range(6) if t != row]
    assert torch.allclose(agg(G), _pcgrad_reference(G, order), atol=1e-10)


def test_pcgrad_shared_order_follows_one_permutation_per_update():
    """order=shared (the official code, Meta-World+): one permutation of the tasks per update,
    each task visiting the others in that order."""
    gen = torch.Generator().manual_seed(6)
    G = torch.randn(7, 25, generator=gen, dtype=torch.float64)
    agg = get_aggregator("pcgrad", seed=3, order="shared", reduction="mean")
    perm = np.random.default_rng(3).permutation(7)  # the draw the aggregator makes
    order = np.stack([[j for j in perm if j != i] for i in range(7)])
    assert torch.allclose(agg(G), _pcgrad_reference(G, order) / 7, atol=1e-10)
    rows = get_aggregator("pcgrad", seed=8, order="shared").random_order(5)
    for i in range(5):  # every row is the same permutation without its own task
        for k in range(5):
            assert [j for j in rows[i] if j != k] == [j for j in rows[k] if j != i]


def test_pcgrad_is_repeatable_and_random_order_matters():
    gen = torch.Generator().manual_seed(4)
    G = torch.randn(8, 30, generator=gen, dtype=torch.float64)
    a, b = get_aggregator("pcgrad", seed=11), get_aggregator("pcgrad", seed=11)
    assert torch.equal(a(G), b(G))
    outputs = {
        tuple(get_aggregator("pcgrad", seed=s)(G).round(decimals=8).tolist()) for s in range(6)
    }
    assert len(outputs) > 1


def test_pcgrad_state_roundtrip_repeats_the_draws():
    G = torch.randn(5, 9, dtype=torch.float64)
    agg = get_aggregator("pcgrad", seed=2)
    agg(G)
    state = agg.state_dict()
    first = agg(G)
    other = get_aggregator("pcgrad", seed=99)
    other.load_state_dict(state)
    assert torch.equal(other(G), first)


def test_zero_gradients_give_no_nan():
    G = torch.tensor([[0.0, 0.0], [1.0, -1.0], [-2.0, 1.0]])
    for name in ("pcgrad", "cagrad", "mean"):
        d = get_aggregator(name)(G)
        assert torch.isfinite(d).all(), name
    all_zero = torch.zeros(3, 4)
    for name in ("pcgrad", "cagrad"):
        assert torch.equal(get_aggregator(name)(all_zero), torch.zeros(4))


def test_cagrad_orthogonal_equal_norms_hand_derived():
    # w = (1/2, 1/2) by symmetry, g_w = g0, so d = (1 + c) g0, then divided by 1 + c^2.
    G = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    c = 0.4
    g0 = torch.tensor([0.5, 0.5], dtype=torch.float64)
    assert torch.allclose(get_aggregator("cagrad", c=c)(G), (1 + c) * g0 / (1 + c**2), atol=1e-6)
    assert torch.allclose(get_aggregator("cagrad", c=c, rescale=0)(G), (1 + c) * g0, atol=1e-6)
    assert torch.allclose(get_aggregator("cagrad", c=c, rescale=2)(G), g0, atol=1e-6)


def _cagrad_official(G: np.ndarray, c: float) -> np.ndarray:
    """The official CAGrad routine (numerical gradients, SLSQP), rescale=1."""
    T = G.shape[0]
    A = G @ G.T
    x0 = np.ones(T) / T
    g0_norm = np.sqrt(A.mean() + 1e-8)
    cc = c * g0_norm + 1e-8

    def obj(x):
        return x @ A @ x0 + cc * np.sqrt(x @ A @ x + 1e-8)

    res = minimize(
        obj,
        x0,
        bounds=[(0, 1)] * T,
        constraints={"type": "eq", "fun": lambda x: 1 - x.sum()},
        options={"ftol": 1e-14, "maxiter": 1000},
    )
    gw = res.x @ G
    g = G.mean(0) + cc / (np.linalg.norm(gw) + 1e-8) * gw
    return g / (1 + c**2)


@pytest.mark.parametrize("tasks", [2, 3, 5])
def test_cagrad_matches_official_routine(tasks):
    rng = np.random.default_rng(tasks)
    for _ in range(5):
        G = rng.normal(size=(tasks, 12))
        G[1] = -0.8 * G[0] + 0.3 * rng.normal(size=12)  # make conflict likely
        ours = get_aggregator("cagrad", c=0.5)(torch.from_numpy(G)).numpy()
        np.testing.assert_allclose(ours, _cagrad_official(G, 0.5), atol=2e-4)


def test_cagrad_two_tasks_matches_grid_search_of_the_dual():
    G = np.array([[3.0, 0.5], [-1.0, 1.0]])
    c = 0.6
    A = G @ G.T
    g0n = np.sqrt(A.mean())
    grid = np.linspace(0, 1, 200_001)
    W = np.stack([grid, 1 - grid], axis=1)
    values = W @ A @ np.full(2, 0.5) + c * g0n * np.sqrt(np.einsum("ij,jk,ik->i", W, A, W))
    w = W[values.argmin()]
    gw = w @ G
    expected = (G.mean(0) + c * g0n / np.linalg.norm(gw) * gw) / (1 + c**2)
    ours = get_aggregator("cagrad", c=c)(torch.from_numpy(G)).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_cagrad_zero_c_is_mean_and_task_order_does_not_matter():
    G = torch.randn(6, 40, dtype=torch.float64)
    assert torch.allclose(get_aggregator("cagrad", c=0.0)(G), G.mean(0), atol=1e-12)
    perm = torch.randperm(6)
    for name in ("mean", "cagrad"):
        agg = get_aggregator(name)
        assert torch.allclose(agg(G), agg(G[perm]), atol=1e-6), name


def test_cagrad_improves_the_worst_task_over_mean():
    G = torch.tensor([[4.0, 0.2], [-3.0, 1.0], [0.1, 0.5]], dtype=torch.float64)
    mean, cag = get_aggregator("mean")(G), get_aggregator("cagrad", c=0.9, rescale=0)(G)
    assert (G @ cag).min() > (G @ mean).min()


def test_weighting_direction_is_weights_times_G():
    G = torch.randn(4, 10, dtype=torch.float64)
    for name in ("mean", "sum", "pcgrad", "cagrad"):
        result = get_aggregator(name).aggregate(G)
        assert result.weights is not None
        assert torch.allclose(result.weights @ G, result.direction, atol=1e-10), name


def test_single_task_returns_its_gradient():
    g = torch.randn(1, 5)
    for name in ("mean", "sum", "pcgrad", "cagrad"):
        assert torch.equal(get_aggregator(name)(g), g[0]), name


def test_non_finite_gradients_name_the_tasks():
    G = torch.ones(4, 3)
    G[1, 0] = float("nan")
    G[3, 2] = float("inf")
    agg = get_aggregator("pcgrad")
    agg.task_names = ["reach", "push", "pick", "door"]
    with pytest.raises(NonFiniteGradientError, match="push, door"):
        agg(G)
    with pytest.raises(NonFiniteGradientError, match="task 1, task 3"):
        get_aggregator("mean")(G)


@pytest.mark.parametrize(
    "bad", [torch.ones(3), torch.ones(2, 3, 4), torch.ones(2, 3, dtype=torch.long)]
)
def test_wrong_shapes_raise_value_error(bad):
    with pytest.raises(ValueError, match=r"shape \[T, P\]"):
        get_aggregator("cagrad")(bad)


def test_diagnostics_on_reference():
    result = get_aggregator("pcgrad", seed=0).aggregate(J)
    diag = gradient_diagnostics(J, result)
    assert torch.allclose(diag.task_norms, torch.tensor([18**0.5, 38**0.5]))
    assert diag.cosine[0, 1].item() == pytest.approx(-22 / (18**0.5 * 38**0.5), rel=1e-6)
    assert diag.conflict_fraction == 1.0
    assert diag.direction_norm == pytest.approx(float(result.direction.norm()), rel=1e-5)
    G = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.1], [0.0, 0.0]])
    d = gradient_diagnostics(G)
    # pairs: (0,2) conflict; the zero gradient has cosine 0 with everyone
    assert d.conflict_fraction == pytest.approx(1 / 6)
    assert d.direction_norm == pytest.approx(float(G.mean(0).norm()))
