"""RLW: the paper's formula with the same draws, torchjd's Random in distribution, one draw per
update on either MT-SAC path, and the generator's state round trip."""

import io

import pytest
import torch
from batches import replay_batch
from torchjd.aggregation import Random

from mtrl.agents import MTSAC, AgentConfig, SurgeryConfig
from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, TaskGradients, get_aggregator

DISTRIBUTIONS = ["normal", "uniform", "dirichlet", "bernoulli", "constrained_bernoulli"]


def test_weights_are_the_papers_formula_with_the_same_draws():
    """softmax of standard normal draws, a fresh draw per update, on both paths."""
    T = 6
    agg = get_aggregator("rlw", seed=3)
    gen = torch.Generator().manual_seed(3)
    G = torch.randn(T, 11, dtype=torch.float64)
    for step in range(5):
        expected = torch.softmax(torch.randn(T, generator=gen, dtype=torch.float64), dim=0)
        if step % 2:
            assert torch.equal(agg.fixed_weights(T), expected)
        else:
            result = agg.aggregate(G)
            assert torch.equal(result.weights, expected)
            torch.testing.assert_close(result.direction, expected @ G)


def test_other_distributions_follow_the_authors_code_with_the_same_draws():
    T, gen = 5, torch.Generator().manual_seed(8)
    f64 = {"dtype": torch.float64}
    e = torch.empty(T, **f64).exponential_(generator=gen.manual_seed(8))
    dirichlet = torch.softmax(e / e.sum(), dim=0)
    uniform = torch.softmax(torch.rand(T, generator=gen.manual_seed(8), **f64), dim=0)
    one_hot = torch.zeros(T, **f64)
    one_hot[int(torch.randint(T, (1,), generator=gen.manual_seed(8)))] = 1.0
    expected = {"dirichlet": dirichlet, "uniform": uniform, "constrained_bernoulli": one_hot}
    for name, weights in expected.items():
        assert torch.equal(get_aggregator("rlw", seed=8, distribution=name).draw(T), weights)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_weights_support(distribution):
    agg = get_aggregator("rlw", seed=1, distribution=distribution)
    W = torch.stack([agg.draw(4) for _ in range(300)])
    if distribution.endswith("bernoulli"):
        assert set(W.unique().tolist()) <= {0.0, 1.0} and (W.sum(1) >= 1).all()
        if distribution == "constrained_bernoulli":
            assert (W.sum(1) == 1).all()
    else:
        assert (W > 0).all()
        torch.testing.assert_close(W.sum(1), torch.ones(300, dtype=torch.float64))
    assert (W.std(0) > 0).all()  # random, not constant


def test_matches_torchjd_random_in_distribution():
    """Mean and variance of each weight match torchjd's RLW (``Random``) over many draws."""
    T, N = 4, 20_000
    agg = get_aggregator("rlw", seed=0)
    ours = torch.stack([agg.draw(T) for _ in range(N)])
    torch.manual_seed(0)
    J = torch.zeros(T, 3, dtype=torch.float64)
    theirs = torch.stack([Random().weighting(J) for _ in range(N)])
    torch.testing.assert_close(
        ours.mean(0), torch.full((T,), 1 / T, dtype=torch.float64), atol=4e-3, rtol=0
    )
    torch.testing.assert_close(theirs.mean(0), ours.mean(0), atol=6e-3, rtol=0)
    torch.testing.assert_close(ours.var(0), theirs.var(0), rtol=0.06, atol=0)


def test_single_task_returns_its_gradient_without_drawing():
    agg = get_aggregator("rlw", seed=0)
    before = agg.generator.get_state()
    g = torch.randn(1, 7)
    assert torch.equal(agg(g), g[0])
    assert torch.equal(agg.fixed_weights(1), torch.ones(1, dtype=torch.float64))
    assert torch.equal(agg.generator.get_state(), before)


@pytest.mark.parametrize("distribution", DISTRIBUTIONS)
def test_identical_gradients_give_that_gradient_times_the_weight_sum(distribution):
    g = torch.randn(9, dtype=torch.float64)
    result = get_aggregator("rlw", seed=2, distribution=distribution).aggregate(g.expand(5, 9))
    scale = 1.0 if not distribution.endswith("bernoulli") else float(result.weights.sum())
    torch.testing.assert_close(result.direction, scale * g)


def test_non_finite_gradient_names_the_task():
    G = torch.ones(3, 4)
    G[2, 1] = float("inf")
    agg = get_aggregator("rlw", seed=0)
    agg.task_names = ["reach", "push", "door"]
    with pytest.raises(NonFiniteGradientError, match="door"):
        agg(G)


def test_bad_options_are_one_line_errors():
    with pytest.raises(MtrlError, match=r"^rlw.distribution='gauss': must be normal, ") as exc:
        get_aggregator("rlw", distribution="gauss")
    assert "\n" not in str(exc.value)
    with pytest.raises(MtrlError, match=r"has no option 'dist'"):
        get_aggregator("rlw", dist="normal")


def test_seeds_repeat_and_differ():
    draws = {s: get_aggregator("rlw", seed=s).draw(5) for s in (0, 0, 1)}
    assert torch.equal(get_aggregator("rlw", seed=0).draw(5), draws[0])
    assert not torch.equal(draws[0], draws[1])
    assert get_aggregator("rlw").draw(5).shape == (5,)  # seed None: fresh entropy


def test_state_round_trip_through_a_weights_only_checkpoint():
    agg = get_aggregator("rlw", seed=4, distribution="bernoulli")
    agg.draw(6)
    buffer = io.BytesIO()
    torch.save(agg.state_dict(), buffer)
    buffer.seek(0)
    other = get_aggregator("rlw", seed=99, distribution="bernoulli")
    other.load_state_dict(torch.load(buffer, weights_only=True))
    for _ in range(5):
        assert torch.equal(other.draw(6), agg.draw(6))


# --------------------------------------------------------------------------- through MT-SAC
T, B, OBS, ACT = 4, 16, 8 + 4, 2


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    return replay_batch(T, B, OBS, ACT, seed)


def agent() -> MTSAC:
    torch.manual_seed(0)
    return MTSAC(OBS, ACT, T, AgentConfig(hidden=[32, 32]), SurgeryConfig(name="rlw"), seed=5)


def test_fused_and_per_task_paths_draw_once_and_agree():
    """Without diagnostics MT-SAC takes the fused path (fixed_weights), with them per-task
    gradients (aggregate): the same draw gives the same update, and the streams stay in step
    whichever path each update took."""
    fused, per_task = agent(), agent()
    start = [p.detach().clone() for p in fused.critic.parameters()]
    for step, diag in enumerate([(False, True), (True, False), (False, True)]):
        torch.manual_seed(step)
        fused.update(batch(step), diagnostics=diag[0])
        torch.manual_seed(step)
        per_task.update(batch(step), diagnostics=diag[1])
        for net in ("critic", "actor"):
            a, b = fused.aggregators[net].generator, per_task.aggregators[net].generator
            assert torch.equal(a.get_state(), b.get_state())
        for p, q in zip(fused.critic.parameters(), per_task.critic.parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
        for p, q in zip(fused.actor.parameters(), per_task.actor.parameters(), strict=True):
            torch.testing.assert_close(p, q, atol=1e-5, rtol=1e-4)
    moved = max((p - q).abs().max() for p, q in zip(fused.critic.parameters(), start, strict=True))
    assert moved > 1e-4


def test_fused_gradient_equals_weights_times_per_task_gradients():
    """One backward of the weighted loss sum is wᵀG for the same draw (a toy linear model)."""
    from mtrl.surgery import per_task_grads

    gen = torch.Generator().manual_seed(0)
    W = torch.randn(3, 5, generator=gen, requires_grad=True)
    x, y = torch.randn(6, 10, 5, generator=gen), torch.randn(6, 10, 3, generator=gen)

    def losses(params, data):
        xs, ys = data
        return ((xs @ params["W"].T - ys) ** 2).mean(dim=(-1, -2))

    G = per_task_grads(lambda p, d: losses(p, (d[0][None], d[1][None]))[0], {"W": W}, (x, y))
    weights = get_aggregator("rlw", seed=1).fixed_weights(6)
    torch.dot(weights.float(), losses({"W": W}, (x, y))).backward()
    direction = get_aggregator("rlw", seed=1).aggregate(TaskGradients([G.view(6, 3, 5)]))
    torch.testing.assert_close(W.grad, direction.direction[0], atol=1e-6, rtol=1e-5)
