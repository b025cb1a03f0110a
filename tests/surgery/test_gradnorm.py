"""GradNorm: the paper's update rule, negative losses, the state round trip and options."""

import io

import pytest
import torch

from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, get_aggregator


def reloaded(state: dict) -> dict:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def run(gradnorm, steps):
    """Weights at each update; the trainer's norms are those of the weighted gradients."""
    out = []
    for losses, grad_norms in steps:
        weights = gradnorm.weights(losses)
        out.append(weights)
        gradnorm.observe(losses, shared_grad_norms=weights * grad_norms)
    return out


def paper_gradnorm(steps, alpha: float, lr: float) -> list[torch.Tensor]:
    """Chen et al. 2018, Algorithm 1, by autograd: ``grad_norms`` are ‖∇_W L_t‖."""
    tasks = steps[0][0].numel()
    w = torch.ones(tasks, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    initial, out = steps[0][0], []
    for losses, grad_norms in steps:
        out.append(w.detach().clone())
        G = w * grad_norms
        ratio = losses / initial
        target = (G.mean() * (ratio / ratio.mean()) ** alpha).detach()
        opt.zero_grad()
        (G - target).abs().sum().backward()
        opt.step()
        with torch.no_grad():
            w.mul_(tasks / w.sum())
    return out


def random_steps(seed: int, count: int, tasks: int = 3, sign: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    return [
        (
            sign * (torch.rand(tasks, generator=gen, dtype=torch.float64) * 4 + 0.1),
            torch.rand(tasks, generator=gen, dtype=torch.float64) * 3 + 0.1,
        )
        for _ in range(count)
    ]


def test_first_steps_by_hand():
    gradnorm = get_aggregator("gradnorm", lr=0.01)
    grad_norms = torch.tensor([1.0, 3.0], dtype=torch.float64)
    # step 1: r = 1, G = (1, 3), target = mean G = 2: d/dw = sign(G - 2) ‖∇L‖ = (-1, 3); Adam's
    # first step is lr * sign: w = (1.01, 0.99), which already sums to 2
    # step 2: task 0's loss halved, task 1's stayed: L̃ = (0.5, 1), r = (2/3, 4/3); G = (1.01,
    # 2.97), mean 1.99, targets 1.99 r^1.5 = (1.08, 3.06): both below, d/dw = (-1, -3)
    steps = [(torch.tensor([2.0, 1.0]).double(), grad_norms)] * 2
    steps[1] = (torch.tensor([1.0, 1.0]).double(), grad_norms)
    weights = run(gradnorm, steps)
    assert torch.equal(weights[0], torch.ones(2, dtype=torch.float64))
    assert torch.allclose(weights[1], torch.tensor([1.01, 0.99]).double())
    # Adam, task 1: m̂ = (0.9 * 0.3 - 0.3) / (1 - 0.9²), v̂ = 9 (both gradients are ±3)
    step = 0.01 * (0.9 * 0.3 - 0.3) / (1 - 0.81) / 3
    w = torch.tensor([1.02, 0.99 - step]).double()
    assert torch.allclose(gradnorm.weights(steps[0][0]), 2 * w / w.sum(), rtol=1e-9)


def test_matches_the_paper_over_steps():
    steps = random_steps(0, 12)
    got = run(get_aggregator("gradnorm", alpha=1.5, lr=0.05), steps)
    for a, b in zip(got, paper_gradnorm(steps, 1.5, 0.05), strict=True):
        assert torch.allclose(a, b, rtol=1e-12)
        assert torch.isclose(a.sum(), torch.tensor(3.0).double())


def test_negative_losses_equalise_the_gradient_norms():
    negative = random_steps(1, 8, sign=-1.0)
    alpha_zero = [(losses.abs(), norms) for losses, norms in negative]
    got = run(get_aggregator("gradnorm", alpha=1.5, lr=0.05), negative)
    for a, b in zip(got, paper_gradnorm(alpha_zero, 0.0, 0.05), strict=True):
        assert torch.allclose(a, b, rtol=1e-12)
    # a negative L(0) keeps every rate at 1 even once the losses turn positive
    mixed = [(-torch.ones(2), torch.ones(2))] + [(torch.tensor([1.0, 9.0]), torch.ones(2))] * 5
    assert torch.allclose(run(get_aggregator("gradnorm"), mixed)[-1], torch.ones(2))


def test_converges_to_equal_weighted_gradient_norms_with_equal_rates():
    gradnorm = get_aggregator("gradnorm", lr=0.01)
    grad_norms = torch.tensor([1.0, 4.0])
    steps = [(torch.ones(2), grad_norms)] * 600
    weights = run(gradnorm, steps)[-1]
    # w ∝ 1 / ‖∇L‖ with Σ w = 2: (1.6, 0.4), within Adam's lr-sized oscillation
    assert torch.allclose(weights, torch.tensor([1.6, 0.4]), atol=0.03)


def test_weights_stay_positive():
    gradnorm = get_aggregator("gradnorm", alpha=0.0, lr=0.5)
    weights = run(gradnorm, [(torch.ones(2), torch.tensor([1.0, 1000.0]))] * 20)
    assert all(bool((w > 0).all()) and torch.isclose(w.sum(), torch.tensor(2.0)) for w in weights)


def test_identical_losses_and_norms_and_a_single_task():
    weights = run(get_aggregator("gradnorm"), [(torch.full((4,), 2.0), torch.ones(4))] * 3)
    assert all(torch.equal(w, torch.ones(4)) for w in weights)
    single = run(
        get_aggregator("gradnorm"), [(torch.tensor([v]), torch.ones(1)) for v in (3.0, 1.0)]
    )
    assert all(torch.equal(w, torch.ones(1)) for w in single)


def test_returned_weights_are_not_changed_by_observe():
    gradnorm = get_aggregator("gradnorm", lr=0.1)
    weights = gradnorm.weights(torch.ones(2))
    gradnorm.observe(torch.ones(2), shared_grad_norms=torch.tensor([1.0, 2.0]))
    assert torch.equal(weights, torch.ones(2)) and gradnorm.last_weights is weights


def test_state_round_trip_continues_exactly():
    steps = random_steps(2, 8, tasks=4)
    gradnorm = get_aggregator("gradnorm", lr=0.05)
    run(gradnorm, steps[:4])
    fresh = get_aggregator("gradnorm", lr=0.05)
    fresh.load_state_dict(reloaded(gradnorm.state_dict()))
    for a, b in zip(run(fresh, steps[4:]), run(gradnorm, steps[4:]), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(fresh.state_dict()["initial_losses"], steps[0][0])


def test_needs_the_shared_gradient_norms():
    gradnorm = get_aggregator("gradnorm")
    assert gradnorm.needs == {"shared_grad_norms"} and gradnorm.stateful
    with pytest.raises(ValueError, match="shared_grad_norms"):
        gradnorm.observe(torch.ones(2))


def test_non_finite_inputs_name_the_tasks_before_learning():
    gradnorm = get_aggregator("gradnorm")
    gradnorm.task_names = ["reach", "push", "pick"]
    with pytest.raises(NonFiniteGradientError, match="shared_grad_norms for reach, pick"):
        gradnorm.observe(torch.ones(3), shared_grad_norms=torch.tensor([torch.inf, 1.0, torch.nan]))
    assert gradnorm.initial_losses is None


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"alpha": -0.5}, "gradnorm.alpha=-0.5: must be >= 0"),
        ({"lr": 0}, "gradnorm.lr=0: must be > 0"),
        ({"alpha": float("nan")}, "gradnorm.alpha"),
        ({"beta": 1.0}, "has no option 'beta'"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(MtrlError, match=message) as info:
        get_aggregator("gradnorm", **options)
    assert "\n" not in str(info.value)
