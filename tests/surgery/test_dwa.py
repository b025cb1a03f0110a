"""DWA: weights from window means, negative losses, the state round trip and options."""

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


def run(dwa, steps):
    """The weights DWA gives at each update (before observing that update's losses)."""
    out = []
    for losses in steps:
        out.append(dwa.weights(losses).clone())
        dwa.observe(losses)
    return out


def libmtl_dwa(steps: list[torch.Tensor], window: int, temperature: float) -> list[torch.Tensor]:
    """LibMTL's DWA with an epoch of ``window`` updates: the epoch means' ratio, or ones."""
    tasks, epoch_means, out = steps[0].numel(), [], []
    for i, _ in enumerate(steps):
        epoch = i // window
        if epoch > 1:
            w = epoch_means[epoch - 1] / epoch_means[epoch - 2]
            out.append(tasks * torch.softmax(w / temperature, dim=-1))
        else:
            out.append(torch.ones(tasks, dtype=steps[0].dtype))
        if (i + 1) % window == 0:
            epoch_means.append(torch.stack(steps[i + 1 - window : i + 1]).mean(0))
    return out


def test_two_windows_by_hand():
    dwa = get_aggregator("dwa", window=2, temperature=2.0)
    steps = [torch.tensor(v) for v in ([2.0, 4.0], [2.0, 4.0], [1.0, 4.0], [1.0, 4.0], [9.0, 9.0])]
    weights = run(dwa, steps)
    for w in weights[:4]:  # until two windows are complete
        assert torch.equal(w, torch.ones(2))
    # ratios (1/2, 1): w = 2 softmax((0.25, 0.5))
    e0, e1 = math.exp(0.25), math.exp(0.5)
    assert torch.allclose(weights[4], torch.tensor([2 * e0 / (e0 + e1), 2 * e1 / (e0 + e1)]))


def test_matches_libmtl_over_several_windows():
    gen = torch.Generator().manual_seed(0)
    steps = [torch.rand(3, generator=gen, dtype=torch.float64) * 4 + 0.1 for _ in range(17)]
    dwa = get_aggregator("dwa", window=3, temperature=1.5)
    for got, expected in zip(run(dwa, steps), libmtl_dwa(steps, 3, 1.5), strict=True):
        assert torch.allclose(got, expected, rtol=1e-12)


def test_negative_losses_use_the_relative_change():
    dwa = get_aggregator("dwa", window=1, temperature=1.0)
    # task 0: -2 -> -1 rose by half its magnitude (r = 1.5); task 1: 4 -> 2 fell by half (0.5)
    weights = run(dwa, [torch.tensor([-2.0, 4.0]), torch.tensor([-1.0, 2.0]), torch.zeros(2)])
    expected = 2 * torch.softmax(torch.tensor([1.5, 0.5]), dim=0)
    assert torch.allclose(weights[2], expected)
    # the same relative fall of a negative and a positive loss weighs the same
    dwa = get_aggregator("dwa", window=1, temperature=1.0)
    both = run(dwa, [torch.tensor([-3.0, 3.0]), torch.tensor([-3.6, 2.4]), torch.zeros(2)])
    assert torch.allclose(both[2], torch.ones(2))
    # a zero mean does not divide by zero
    dwa = get_aggregator("dwa", window=1, temperature=1.0)
    zero = run(dwa, [torch.tensor([0.0, 1.0]), torch.tensor([1e-9, 1.0]), torch.zeros(2)])
    assert torch.isfinite(zero[2]).all()


def test_identical_losses_and_a_single_task():
    dwa = get_aggregator("dwa", window=1)
    for w in run(dwa, [torch.full((4,), 3.0)] * 4):
        assert torch.equal(w, torch.ones(4))
    single = get_aggregator("dwa", window=1)
    for w in run(single, [torch.tensor([v]) for v in (1.0, 5.0, 2.0, 7.0)]):
        assert torch.equal(w, torch.ones(1))


def test_state_round_trip_mid_window_continues_exactly():
    gen = torch.Generator().manual_seed(1)
    steps = [torch.randn(4, generator=gen) for _ in range(14)]
    dwa = get_aggregator("dwa", window=3)
    run(dwa, steps[:8])  # two windows and two updates of the third
    fresh = get_aggregator("dwa", window=3)
    fresh.load_state_dict(reloaded(dwa.state_dict()))
    resumed, straight = run(fresh, steps[8:]), run(dwa, steps[8:])
    for a, b in zip(resumed, straight, strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(straight[0], straight[-1])  # the windows did change the weights


def test_non_finite_losses_name_the_tasks():
    dwa = get_aggregator("dwa", window=1)
    dwa.task_names = ["reach", "push"]
    with pytest.raises(NonFiniteGradientError, match="losses for push"):
        dwa.observe(torch.tensor([1.0, float("nan")]))


def test_weights_are_cached_between_windows():
    dwa = get_aggregator("dwa", window=2)
    run(dwa, [torch.tensor([1.0, 2.0])] * 4)
    assert dwa.weights(torch.ones(2)) is dwa.weights(torch.ones(2))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window": 0}, "dwa.window=0: must be >= 1"),
        ({"window": 1.5}, "dwa.window"),
        ({"temperature": 0}, "dwa.temperature=0: must be > 0"),
        ({"T": 2.0}, "has no option 'T'"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(MtrlError, match=message) as info:
        get_aggregator("dwa", **options)
    assert "\n" not in str(info.value)
