"""GradDrop: torchjd on the same draws, one sign per coordinate, keep rates, state, edge cases."""

import io

import numpy as np
import pytest
import torch
from torchjd.aggregation import GradDrop as TorchJDGradDrop

from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, get_aggregator
from mtrl.surgery.aggregators.graddrop import graddrop_block
from mtrl.surgery.taskgrads import TaskGradients

SIZES = [(t, p) for t in (2, 5, 10, 50) for p in (3, 20, 200)]


def random_G(tasks: int, params: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(tasks, params, generator=gen, dtype=dtype)


@pytest.mark.parametrize(("tasks", "params"), SIZES)
def test_matches_torchjd_on_the_same_draws(tasks, params):
    # An aggregator seeded with s draws what torch's global generator draws after
    # manual_seed(s), so both keep the same signs; the sums differ only by rounding.
    for seed in range(3):
        for leak in (0.0, 0.3):
            G = random_G(tasks, params, 1000 + seed)
            ours = get_aggregator("graddrop", seed=seed, leak=leak)(G)
            torch.manual_seed(seed)
            expected = TorchJDGradDrop(leak=torch.full((tasks,), leak, dtype=G.dtype))(G)
            torch.testing.assert_close(ours, expected, rtol=0, atol=1e-12)


def test_matches_torchjd_in_float32():
    G = random_G(10, 500, 3, torch.float32)
    torch.manual_seed(4)
    expected = TorchJDGradDrop()(G)
    torch.testing.assert_close(get_aggregator("graddrop", seed=4)(G), expected)


@pytest.mark.parametrize("tasks", [2, 5, 50])
def test_every_coordinate_keeps_one_sign(tasks):
    G = random_G(tasks, 2000, tasks)
    d = get_aggregator("graddrop", seed=0)(G)
    positive, negative = G.clamp(min=0).sum(0), G.clamp(max=0).sum(0)
    kept_positive = d == positive
    assert (kept_positive | (d == negative)).all()  # exactly one side's components, summed
    assert (d[kept_positive] >= 0).all() and (d[~kept_positive] <= 0).all()
    assert 0.3 < kept_positive.double().mean() < 0.7  # both sides occur


def test_positive_side_is_kept_with_the_sign_purity():
    # Coordinates of purity 0, 0.1, 0.25, 0.5, 0.8 and 1 (p = Σ positive / Σ |g|).
    G = torch.tensor(
        [[-1.0, 1.0, 1.0, 2.0, 4.0, 1.0], [-2.0, -9.0, -3.0, -2.0, -1.0, 3.0]], dtype=torch.float64
    )
    purity = torch.tensor([0.0, 0.1, 0.25, 0.5, 0.8, 1.0], dtype=torch.float64)
    agg, draws = get_aggregator("graddrop", seed=1), 4000
    kept_positive = torch.stack([agg(G) == G.clamp(min=0).sum(0) for _ in range(draws)])
    rate = kept_positive.double().mean(0)
    assert rate[0] == 0 and rate[-1] == 1
    sigma = (purity * (1 - purity) / draws).sqrt()
    assert ((rate - purity).abs() <= 4 * sigma).all(), rate


def test_leak_lets_the_dropped_part_through():
    G = random_G(6, 300, 2)
    d0 = get_aggregator("graddrop", seed=3)(G)
    dropped = G.sum(0) - d0
    for leak in (0.25, 1.0):
        d = get_aggregator("graddrop", seed=3, leak=leak)(G)
        torch.testing.assert_close(d, d0 + leak * dropped, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(get_aggregator("graddrop", seed=3, leak=1.0)(G), G.sum(0))


def test_blocks_draw_one_after_another():
    G = random_G(5, 31, 4)
    blocks = [G[:, :6].reshape(5, 2, 3), G[:, 6:]]
    direction = get_aggregator("graddrop", seed=9)(TaskGradients(blocks))
    assert [d.shape for d in direction] == [(2, 3), (25,)]
    gen = torch.Generator().manual_seed(9)
    expected = [graddrop_block(G[:, :6], torch.rand(6, generator=gen, dtype=G.dtype))]
    expected.append(graddrop_block(G[:, 6:], torch.rand(25, generator=gen, dtype=G.dtype)))
    torch.testing.assert_close(torch.cat([d.reshape(-1) for d in direction]), torch.cat(expected))


def test_large_blocks_are_chunked_consistently():
    G = random_G(50, 9000, 5)  # several chunks of 2621 columns on the CPU
    uniform = torch.rand(9000, dtype=G.dtype)
    positive, negative = G.clamp(min=0).sum(0), G.clamp(max=0).sum(0)
    expected = torch.where(uniform * (positive - negative) < positive, positive, negative)
    torch.testing.assert_close(graddrop_block(G, uniform), expected, rtol=0, atol=1e-12)


def test_reproducible_from_the_seed_and_the_state():
    grads = [TaskGradients([random_G(4, 30, s), random_G(4, 7, s + 50)]) for s in range(6)]
    first, again = get_aggregator("graddrop", seed=7), get_aggregator("graddrop", seed=7)
    for G in grads[:3]:
        for a, b in zip(first(G), again(G), strict=True):
            assert torch.equal(a, b)
    buffer = io.BytesIO()
    torch.save({"surgery": first.state_dict()}, buffer)
    buffer.seek(0)
    resumed = get_aggregator("graddrop", seed=99)
    resumed.load_state_dict(torch.load(buffer, weights_only=True)["surgery"])
    for G in grads[3:]:
        for a, b in zip(first(G), resumed(G), strict=True):
            assert torch.equal(a, b)
    unused, other = get_aggregator("graddrop", seed=8), get_aggregator("graddrop")
    other.load_state_dict(unused.state_dict())  # before any draw
    assert torch.equal(unused(grads[0])[0], other(grads[0])[0])
    G = grads[0].matrix()
    assert len({tuple(get_aggregator("graddrop", seed=s)(G).tolist()) for s in range(5)}) > 1


def test_state_from_another_device_type_restarts_from_the_seed():
    agg = get_aggregator("graddrop", seed=2)
    state = {"start_seed": 2, "device": "cuda:0", "rng": torch.zeros(16, dtype=torch.uint8)}
    agg.load_state_dict(state)
    G = random_G(3, 10, 0)
    with pytest.warns(UserWarning, match="restarting the draws from the seed"):
        d = agg(G)
    assert torch.equal(d, get_aggregator("graddrop", seed=2)(G))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_identical_gradients_give_T_times_the_gradient(dtype):
    g = torch.randn(1, 500, dtype=dtype)
    for tasks in (2, 5, 50):
        d = get_aggregator("graddrop", seed=0)(g.repeat(tasks, 1))
        torch.testing.assert_close(d, tasks * g[0])


def test_single_task_and_zero_gradients():
    g = torch.randn(1, 5)
    assert torch.equal(get_aggregator("graddrop", seed=0)(g), g[0])
    assert torch.equal(get_aggregator("graddrop", seed=0)(torch.zeros(3, 4)), torch.zeros(4))
    G = torch.tensor([[1.0, 0.0], [0.0, 0.0], [-1.0, 0.0]])
    assert torch.isfinite(get_aggregator("graddrop", seed=0)(G)).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_gradients_raise(bad):
    G = torch.ones(3, 4)
    G[2, 0] = bad
    with pytest.raises(NonFiniteGradientError, match="task 2"):
        get_aggregator("graddrop", seed=0)(G)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"leak": "abc"}, r"graddrop.leak='abc': expected a number"),
        ({"leak": 1.5}, r"graddrop.leak=1.5: must be <= 1"),
        ({"leak": -0.1}, r"graddrop.leak=-0.1: must be >= 0"),
    ],
)
def test_bad_options_are_one_line(options, message):
    with pytest.raises(MtrlError, match=message):
        get_aggregator("graddrop", **options)


def test_rates_do_not_depend_on_the_order_of_tasks():
    G = random_G(5, 4000, 6)
    perm = torch.randperm(5)
    a = get_aggregator("graddrop", seed=1)(G)
    b = get_aggregator("graddrop", seed=1)(G[perm])
    # Same draws: the same side is kept, summed in another order.
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-12)
