"""ConFIG: torchjd and the official code's routines, equal cosines, scale, edge cases."""

import pytest
import torch
from matrices import SIZES, random_G
from torchjd.aggregation import ConFIG as TorchJDConFIG

from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, get_aggregator


def official_config(G: torch.Tensor) -> torch.Tensor:
    """tum-pbs/ConFIG ``ConFIG_update`` with its defaults (least squares, ProjectionLength)."""
    units = torch.nan_to_num(G / G.norm(dim=1, keepdim=True), 0.0)
    best = torch.linalg.lstsq(units, torch.ones(len(G), dtype=G.dtype)).solution
    unit = best / best.norm()
    return (G @ unit).sum() * unit


def official_config_double(g1: torch.Tensor, g2: torch.Tensor) -> torch.Tensor:
    """tum-pbs/ConFIG ``ConFIG_update_double``, the closed form its operator uses for T = 2."""
    u1, u2 = g1 / g1.norm(), g2 / g2.norm()
    cos = u1 @ u2
    or1, or2 = g2 - g2.norm() * cos * u1, g1 - g1.norm() * cos * u2
    or1, or2 = or1 / or1.norm(), or2 / or2.norm()
    best = (or2 @ u1) / (or1 @ u2) * or1 + or2
    unit = best / best.norm()
    return (g1 @ unit + g2 @ unit) * unit


@pytest.mark.parametrize(("tasks", "params"), SIZES)
def test_matches_torchjd_and_the_official_routine(tasks, params):
    # Both solve the same least-squares problem exactly: the errors are rounding, amplified by
    # the condition number of the unit gradients (below 30 for these Gaussian matrices).
    for seed in range(3):
        G = random_G(tasks, params, seed)
        ours = get_aggregator("config")(G)
        scale = float(ours.norm())
        torch.testing.assert_close(ours, TorchJDConFIG()(G), rtol=0, atol=1e-9 * scale)
        torch.testing.assert_close(ours, official_config(G), rtol=0, atol=1e-9 * scale)


def test_two_tasks_match_the_official_closed_form():
    for seed in range(10):
        G = random_G(2, 7, seed)
        expected = official_config_double(G[0], G[1])
        torch.testing.assert_close(get_aggregator("config")(G), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("tasks", "params"), [(2, 3), (5, 20), (10, 200), (50, 200)])
def test_equal_positive_cosines_with_every_task(tasks, params):
    for seed in range(3):
        G = random_G(tasks, params, seed)
        G[1] = -0.9 * G[0] + 0.1 * G[1]  # a strong conflict
        d = get_aggregator("config")(G)
        cosines = G @ d / (G.norm(dim=1) * d.norm())
        assert (cosines > 0).all()
        torch.testing.assert_close(cosines, cosines.mean().expand(tasks), rtol=0, atol=1e-10)


def test_length_is_the_sum_of_the_projections():
    G = random_G(6, 30, 1)
    d = get_aggregator("config")(G)
    assert float(d.norm()) == pytest.approx(float((G @ d).sum() / d.norm()), rel=1e-12)


def test_weights_give_the_direction():
    G = random_G(5, 40, 2)
    result = get_aggregator("config").aggregate(G)
    torch.testing.assert_close(result.weights @ G, result.direction, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_identical_gradients_give_T_times_the_gradient(dtype):
    g = torch.randn(1, 50, dtype=dtype)
    for tasks in (2, 5, 50):
        d = get_aggregator("config")(g.repeat(tasks, 1))
        torch.testing.assert_close(d, tasks * g[0])


def test_float32_gradients_agree_with_float64():
    G = random_G(10, 300, 4)
    d32 = get_aggregator("config")(G.float()).double()
    d64 = get_aggregator("config")(G)
    assert float((d32 - d64).norm() / d64.norm()) < 1e-4


def test_single_task_zero_and_opposite_gradients():
    g = torch.randn(1, 5)
    assert torch.equal(get_aggregator("config")(g), g[0])
    assert torch.equal(get_aggregator("config")(torch.zeros(3, 4)), torch.zeros(4))
    # A zero gradient is left out (the official code's nan_to_num); the others keep equal angles.
    G = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 2.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(get_aggregator("config")(G), torch.tensor([1.5, 1.5, 0.0]).double())
    # Exactly opposite gradients: no direction makes a positive angle with both.
    opposite = torch.tensor([[1.0, 2.0], [-2.0, -4.0]], dtype=torch.float64)
    assert torch.equal(get_aggregator("config")(opposite), torch.zeros(2, dtype=torch.float64))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradients_raise(bad):
    G = torch.ones(3, 4)
    G[2, 1] = bad
    with pytest.raises(NonFiniteGradientError, match="task 2"):
        get_aggregator("config")(G)


def test_has_no_options():
    with pytest.raises(MtrlError, match="has no option 'beta'"):
        get_aggregator("config", beta=0.5)
