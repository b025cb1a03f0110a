"""FAMO: the official update rule, negative losses, the state round trip and options."""

import io
import math

import pytest
import torch
import torch.nn.functional as F

from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, get_aggregator


def reloaded(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


class OfficialFAMO:
    """Cranial-XIX/FAMO famo.py (min_losses 0): the weights are the gradient of its loss."""

    def __init__(self, tasks: int, w_lr: float, gamma: float):
        self.w = torch.zeros(tasks, dtype=torch.float64, requires_grad=True)
        self.w_opt = torch.optim.Adam([self.w], lr=w_lr, weight_decay=gamma)

    def weights(self, losses):
        losses = losses.clone().requires_grad_()
        z = F.softmax(self.w, -1).detach()
        d = losses + 1e-8
        c = (z / d).sum().detach()
        return torch.autograd.grad((d.log() * z / c).sum(), losses)[0]

    def update(self, prev, curr):
        delta = (prev + 1e-8).log() - (curr + 1e-8).log()
        with torch.enable_grad():
            d = torch.autograd.grad(F.softmax(self.w, -1), self.w, grad_outputs=delta.detach())[0]
        self.w_opt.zero_grad()
        self.w.grad = d
        self.w_opt.step()


def test_first_steps_by_hand():
    famo = get_aggregator("famo", w_lr=0.1, gamma=0.0)
    losses = torch.tensor([1.0, 3.0], dtype=torch.float64)
    # z = (1/2, 1/2): w ∝ z / L = (1/2, 1/6), normalised to sum 1
    assert torch.allclose(famo.weights(losses), torch.tensor([0.75, 0.25], dtype=torch.float64))
    # task 0 halves its loss, task 1 stays: delta = (log 2, 0), J delta = (log 2 / 4, -log 2 / 4);
    # Adam's first step is lr * sign: the improving task's logit goes down
    famo.observe(losses, losses_after=torch.tensor([0.5, 3.0], dtype=torch.float64))
    z0 = 1 / (1 + math.exp(0.2))  # softmax(-0.1, 0.1)[0]
    w0 = (z0 / 1.0) / (z0 / 1.0 + (1 - z0) / 3.0)
    assert famo.weights(losses)[0].item() == pytest.approx(w0, rel=1e-6)


def test_matches_the_official_code_over_steps():
    famo = get_aggregator("famo", w_lr=0.025, gamma=0.01)
    official = OfficialFAMO(3, 0.025, 0.01)
    gen = torch.Generator().manual_seed(0)
    for _ in range(6):
        losses = torch.rand(3, generator=gen, dtype=torch.float64) * 5 + 0.1
        after = losses * (0.5 + torch.rand(3, generator=gen, dtype=torch.float64))
        assert torch.allclose(famo.weights(losses), official.weights(losses), atol=1e-12)
        famo.observe(losses, losses_after=after)
        official.update(losses, after)
    assert torch.allclose(famo.state_dict()["logits"]["values"], official.w.detach(), atol=1e-12)


def test_identical_losses_and_a_single_task():
    famo = get_aggregator("famo")
    assert torch.equal(famo.weights(torch.full((4,), 2.0)), torch.full((4,), 0.25))
    assert torch.equal(get_aggregator("famo").weights(torch.tensor([7.0])), torch.ones(1))


def test_negative_losses_give_the_mean_for_good():
    famo = get_aggregator("famo")
    negative = torch.tensor([-5.0, 2.0, -300.0])
    assert torch.equal(famo.weights(negative), torch.full((3,), 1 / 3))  # no host sync needed
    famo.observe(negative, losses_after=negative - 1)
    assert famo.mean_only
    positive = torch.tensor([1.0, 2.0, 3.0])
    famo.observe(positive, losses_after=positive / 2)
    assert torch.equal(famo.weights(positive), torch.full((3,), 1 / 3))
    restored = get_aggregator("famo")
    restored.load_state_dict(reloaded(famo.state_dict()))
    assert torch.equal(restored.weights(positive), torch.full((3,), 1 / 3))


def test_zero_loss_is_allowed_as_in_the_official_code():
    famo = get_aggregator("famo")
    weights = famo.weights(torch.tensor([0.0, 1.0]))
    assert torch.isfinite(weights).all() and weights[0] > 0.99
    famo.observe(torch.tensor([1.0, 1.0]), losses_after=torch.tensor([0.0, 1.0]))
    assert not famo.mean_only


def test_state_round_trip_continues_exactly():
    gen = torch.Generator().manual_seed(1)
    steps = [
        (torch.rand(4, generator=gen) + 0.1, torch.rand(4, generator=gen) + 0.1) for _ in range(6)
    ]
    famo = get_aggregator("famo")
    for losses, after in steps[:3]:
        famo.weights(losses)
        famo.observe(losses, losses_after=after)
    fresh = get_aggregator("famo")
    fresh.load_state_dict(reloaded(famo.state_dict()))
    assert fresh.state_dict()["logits"]["values"].equal(famo.state_dict()["logits"]["values"])
    for losses, after in steps[3:]:
        assert torch.equal(fresh.weights(losses), famo.weights(losses))
        fresh.observe(losses, losses_after=after)
        famo.observe(losses, losses_after=after)
    assert torch.equal(fresh.weights(steps[0][0]), famo.weights(steps[0][0]))


def test_state_of_an_unused_instance_round_trips():
    fresh = get_aggregator("famo")
    fresh.load_state_dict(reloaded(get_aggregator("famo").state_dict()))
    assert torch.equal(fresh.weights(torch.ones(2)), torch.full((2,), 0.5))


def test_state_for_other_task_count_is_refused():
    famo = get_aggregator("famo")
    famo.weights(torch.ones(3))
    fresh = get_aggregator("famo")
    fresh.load_state_dict(famo.state_dict())
    with pytest.raises(MtrlError, match="famo state holds 3 tasks, the losses 2"):
        fresh.weights(torch.ones(2))


def test_non_finite_losses_name_the_tasks_before_learning():
    famo = get_aggregator("famo")
    famo.task_names = ["reach", "push", "pick"]
    losses = torch.ones(3)
    famo.weights(losses)
    with pytest.raises(NonFiniteGradientError, match=r"losses_after for push$"):
        famo.observe(losses, losses_after=torch.tensor([1.0, float("nan"), 1.0]))
    assert torch.equal(famo.weights(losses), torch.full((3,), 1 / 3))


def test_needs_the_losses_after_the_step():
    famo = get_aggregator("famo")
    assert famo.needs == {"losses_after"} and famo.stateful
    with pytest.raises(ValueError, match="losses_after"):
        famo.observe(torch.ones(2))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"w_lr": 0}, "famo.w_lr=0: must be > 0"),
        ({"gamma": -1.0}, "famo.gamma=-1.0: must be >= 0"),
        ({"gamma": True}, "famo.gamma=true: expected a number"),
        ({"min_losses": 0.0}, "has no option 'min_losses'"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(MtrlError, match=message) as info:
        get_aggregator("famo", **options)
    assert "\n" not in str(info.value)


def test_no_extra_forward_once_on_the_mean():
    """After a non-positive loss the instance keeps the mean and stops asking for the losses
    after the step, so the trainer skips that forward (the actor under networks=both)."""
    famo = get_aggregator("famo")
    assert famo.needs == frozenset({"losses_after"})
    losses = torch.tensor([2.0, -3.0, 1.0])
    famo.weights(losses)
    famo.observe(losses, losses_after=losses - 0.1)
    assert famo.needs == frozenset()
    famo.observe(losses)  # no losses_after needed now
    torch.testing.assert_close(famo.weights(losses), torch.full((3,), 1 / 3))
