"""UW: the MTRL code's update rule, negative losses, the state round trip and options."""

import io
import math

import pytest
import torch

from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, get_aggregator


def reloaded(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def mtrl_uw_weights(steps: list[torch.Tensor], lr: float) -> list[torch.Tensor]:
    """The weights ½ exp(-s) before each step of Cranial-XIX/FAMO mtrl_files/uw.py's rule: s at 0,
    Adam on Σ ½ (exp(-s) L + s) (here on |L|, which is L for positive losses)."""
    s = torch.zeros(steps[0].numel(), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([s], lr=lr)
    out = []
    for losses in steps:
        out.append(0.5 * torch.exp(-s.detach()))
        opt.zero_grad()
        (0.5 * (torch.exp(-s) * losses.abs() + s)).sum().backward()
        opt.step()
    return out


def test_first_steps_by_hand():
    uw = get_aggregator("uw", lr=0.1)
    losses = torch.tensor([1.0, 4.0], dtype=torch.float64)
    assert torch.equal(uw.weights(losses), torch.tensor([0.5, 0.5], dtype=torch.float64))
    # d/ds = ½ (1 - L) = (0, -1.5): Adam's first step is lr * sign, s = (0, 0.1)
    uw.observe(losses)
    expected = torch.tensor([0.5, 0.5 * math.exp(-0.1)], dtype=torch.float64)
    assert torch.allclose(uw.weights(losses), expected, rtol=1e-12)


def test_matches_the_mtrl_code_over_steps():
    gen = torch.Generator().manual_seed(0)
    steps = [torch.rand(3, generator=gen, dtype=torch.float64) * 10 for _ in range(8)]
    uw = get_aggregator("uw")
    for losses, expected in zip(steps, mtrl_uw_weights(steps, 0.01), strict=True):
        assert torch.allclose(uw.weights(losses), expected, rtol=1e-12)
        uw.observe(losses)


def test_negative_losses_step_on_their_magnitude():
    signed = [torch.tensor([-5.0, 2.0, -300.0], dtype=torch.float64)] * 4
    uw, magnitude = get_aggregator("uw"), get_aggregator("uw")
    for losses in signed:
        assert torch.equal(uw.weights(losses), magnitude.weights(losses.abs()))
        uw.observe(losses)
        magnitude.observe(losses.abs())


def test_weights_settle_at_the_inverse_loss_scale_whatever_the_sign():
    uw = get_aggregator("uw", lr=0.05)
    losses = torch.tensor([-20.0, 0.5, 3.0])
    for _ in range(1500):
        uw.observe(losses)
    assert torch.allclose(uw.weights(losses), 0.5 / losses.abs(), rtol=0.05)


def test_identical_losses_and_a_single_task():
    uw = get_aggregator("uw")
    for _ in range(3):
        weights = uw.weights(torch.full((4,), 2.0))
        assert torch.all(weights == weights[0])
        uw.observe(torch.full((4,), 2.0))
    single = get_aggregator("uw")
    single.observe(torch.tensor([9.0]))
    assert torch.equal(single.weights(torch.tensor([9.0])), torch.ones(1))


def test_state_round_trip_continues_exactly():
    gen = torch.Generator().manual_seed(1)
    steps = [torch.randn(4, generator=gen) * 3 for _ in range(6)]
    uw = get_aggregator("uw")
    for losses in steps[:3]:
        uw.weights(losses)
        uw.observe(losses)
    fresh = get_aggregator("uw")
    fresh.load_state_dict(reloaded(uw.state_dict()))
    for losses in steps[3:]:
        assert torch.equal(fresh.weights(losses), uw.weights(losses))
        fresh.observe(losses)
        uw.observe(losses)
    assert torch.equal(fresh.weights(steps[0]), uw.weights(steps[0]))


def test_saved_state_is_a_snapshot():
    uw = get_aggregator("uw")
    losses = torch.tensor([1.0, 5.0])
    uw.observe(losses)
    state = uw.state_dict()
    before = get_aggregator("uw")
    before.load_state_dict(state)
    expected = before.weights(losses)
    uw.observe(losses)  # must not change the saved state
    again = get_aggregator("uw")
    again.load_state_dict(state)
    assert torch.equal(again.weights(losses), expected)


def test_non_finite_losses_name_the_tasks_before_learning():
    uw = get_aggregator("uw")
    uw.task_names = ["reach", "push"]
    with pytest.raises(NonFiniteGradientError, match=r"non-finite \(NaN/inf\) losses for reach"):
        uw.observe(torch.tensor([float("inf"), 1.0]))
    assert torch.equal(uw.weights(torch.ones(2)), torch.full((2,), 0.5))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"lr": 0}, "uw.lr=0: must be > 0"),
        ({"lr": "fast"}, "uw.lr"),
        ({"init": 0.0}, "has no option 'init'"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(MtrlError, match=message) as info:
        get_aggregator("uw", **options)
    assert "\n" not in str(info.value)
