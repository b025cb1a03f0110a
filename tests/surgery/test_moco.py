"""MoCo against a loop written from the update equations, λ on the simplex, the state round
trip, and an exact resume through MT-SAC."""

import copy
import io

import numpy as np
import pytest
import torch
from batches import replay_batch

from mtrl.agents import MTSAC, AgentConfig, SurgeryConfig
from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, TaskGradients, get_aggregator


def simplex_projection(v: np.ndarray) -> np.ndarray:
    """argmin_{λ in Δ} ‖λ - v‖: max(v - θ, 0) with θ found by bisection on Σ max(v - θ, 0) = 1."""
    lo, hi = v.min() - 1.0, v.max()
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if np.maximum(v - mid, 0).sum() > 1 else (lo, mid)
    return np.maximum(v - (lo + hi) / 2, 0)


def moco_reference(Gs, beta, beta_sigma, gamma, gamma_sigma, rho):
    """The update equations on flat gradients: y_t tracks g_t, λ takes projected steps on
    ½‖Σ λ_t y_t‖² + ½ rho‖λ‖²; yields the direction Σ λ_t y_t and λ after each update."""
    tasks, params = Gs[0].shape
    y, lam = np.zeros((params, tasks)), np.full(tasks, 1 / tasks)
    for k, G in enumerate(Gs, start=1):
        y = y - beta / k**beta_sigma * (y - G.T)
        lam = simplex_projection(
            lam - gamma / k**gamma_sigma * (y.T @ y + rho * np.eye(tasks)) @ lam
        )
        yield y @ lam, lam


SHAPES = [(4, 3), (3,), (2, 2, 2)]  # P = 23 in three blocks


def blocks(G: np.ndarray) -> TaskGradients:
    parts, start = [], 0
    for shape in SHAPES:
        size = int(np.prod(shape))
        parts.append(torch.from_numpy(G[:, start : start + size].reshape(-1, *shape).copy()))
        start += size
    return TaskGradients(parts)


def flat(direction: list[torch.Tensor]) -> np.ndarray:
    return torch.cat([d.reshape(-1) for d in direction]).numpy()


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"beta": 0.7, "beta_sigma": 0.3, "gamma": 0.5, "gamma_sigma": 0.0, "rho": 0.2},
        {"beta": 1.0, "beta_sigma": 0.0, "gamma": 3.0, "gamma_sigma": 1.0, "rho": 0.0},
    ],
)
def test_matches_the_update_equations_over_several_steps(options):
    rng = np.random.default_rng(0)
    Gs = [rng.normal(size=(5, 23)) * rng.uniform(0.2, 3, size=(5, 1)) for _ in range(8)]
    Gs[3][1] = -Gs[3][0]  # a conflict
    agg = get_aggregator("moco", **options)
    full = {"beta": 0.1, "beta_sigma": 0.5, "gamma": 0.1, "gamma_sigma": 0.5, "rho": 0.0} | options
    for G, (d, lam) in zip(Gs, moco_reference(Gs, **full), strict=True):
        ours = agg.aggregate(blocks(G))
        np.testing.assert_allclose(flat(ours.direction), d, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(agg.lam.numpy(), lam, atol=1e-9)
    flat_agg = get_aggregator("moco", **options)  # a flat [T, P] G gives the same
    for G, (d, _) in zip(Gs, moco_reference(Gs, **full), strict=True):
        np.testing.assert_allclose(flat_agg(torch.from_numpy(G)).numpy(), d, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "options", [{}, {"beta": 1.0, "beta_sigma": 0.0, "gamma": 3.0, "gamma_sigma": 1.0, "rho": 0.2}]
)
def test_device_path_follows_the_update_equations_and_hands_its_state_over(options):
    """solver=device (what a CUDA graph's update takes): the reference's directions and λ over
    several steps as the host path (its step count and λ kept on the device); its state
    saved in the middle and restored into a host and a device aggregator continues as the
    original does."""
    rng = np.random.default_rng(0)
    Gs = [rng.normal(size=(5, 23)) * rng.uniform(0.2, 3, size=(5, 1)) for _ in range(8)]
    Gs[3][1] = -Gs[3][0]  # a conflict
    agg = get_aggregator("moco", solver="device", **options)
    full = {"beta": 0.1, "beta_sigma": 0.5, "gamma": 0.1, "gamma_sigma": 0.5, "rho": 0.0} | options
    for k, (G, (d, lam)) in enumerate(zip(Gs, moco_reference(Gs, **full), strict=True)):
        if k == 4:
            state = copy.deepcopy(agg.state_dict())
            restored = {s: get_aggregator("moco", solver=s, **options) for s in ("host", "device")}
            for other in restored.values():
                other.load_state_dict(copy.deepcopy(state))
        ours = agg.aggregate(blocks(G))
        np.testing.assert_allclose(flat(ours.direction), d, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(agg.state_dict()["lam"].numpy(), lam, atol=1e-9)
        assert agg.device_state is not None  # λ and the step count live on the device
        if k >= 4:
            for other in restored.values():
                theirs = other.aggregate(blocks(G))
                np.testing.assert_allclose(flat(theirs.direction), flat(ours.direction), atol=1e-12)
    assert agg.state_dict()["step"] == restored["device"].state_dict()["step"] == 8


def test_lambda_stays_on_the_simplex():
    gen = torch.Generator().manual_seed(1)
    for gamma in (0.01, 1.0, 100.0):
        agg = get_aggregator("moco", gamma=gamma, gamma_sigma=0.0, rho=0.5)
        for _ in range(20):
            agg(torch.randn(7, 30, generator=gen, dtype=torch.float64) * 5)
            assert (agg.lam >= 0).all()
            assert float(agg.lam.sum()) == pytest.approx(1.0, abs=1e-12)
    assert (agg.lam == 0).any()  # large steps reach the boundary


def test_state_round_trip_gives_the_same_next_outputs():
    gen = torch.Generator().manual_seed(2)
    Gs = [TaskGradients([torch.randn(4, 6, 5, generator=gen), torch.randn(4, 5, generator=gen)])]
    Gs += [TaskGradients([b.flip(0) * 2 for b in Gs[0].blocks]) for _ in range(4)]
    agg = get_aggregator("moco", beta=0.5, gamma=2.0)
    for G in Gs[:3]:
        agg(G)
    buffer = io.BytesIO()
    torch.save(agg.state_dict(), buffer)
    buffer.seek(0)
    other = get_aggregator("moco", beta=0.5, gamma=2.0)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    for G in Gs[3:]:
        for a, b in zip(other(G), agg(G), strict=True):
            assert torch.equal(a, b)
    assert other.step == agg.step == 5


def test_single_task_returns_its_gradient_and_keeps_no_state():
    g = torch.randn(1, 9)
    agg = get_aggregator("moco")
    assert torch.equal(agg(g), g[0])
    assert agg.step == 0 and agg.y is None


def test_identical_gradients_give_the_tracked_scale_of_that_gradient():
    g = torch.randn(12, dtype=torch.float64)
    agg = get_aggregator("moco", beta=0.3, beta_sigma=0.5, rho=0.1)
    remaining = 1.0
    for k in range(1, 6):
        remaining *= 1 - 0.3 / k**0.5
        torch.testing.assert_close(agg(g.expand(4, 12)), (1 - remaining) * g)
        torch.testing.assert_close(agg.lam, torch.full((4,), 0.25, dtype=torch.float64))


def test_non_finite_gradient_raises_and_leaves_the_state_alone():
    agg = get_aggregator("moco")
    agg.task_names = ["reach", "push", "door"]
    agg(torch.ones(3, 4))
    state = copy.deepcopy(agg.state_dict())
    G = torch.ones(3, 4)
    G[1, 2] = float("nan")
    with pytest.raises(NonFiniteGradientError, match="push"):
        agg(G)
    assert agg.step == state["step"] and torch.equal(agg.y[0], state["y"][0])


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"beta": 0}, r"^moco.beta=0: must be > 0$"),
        ({"beta": 1.5}, r"^moco.beta=1.5: must be <= 1$"),
        ({"rho": -1}, r"^moco.rho=-1: must be >= 0$"),
        ({"gamma_sigma": "x"}, r"^moco.gamma_sigma="),
        ({"lr": 0.1}, r"^aggregator 'moco' has no option 'lr'"),
    ],
)
def test_bad_options_are_one_line_errors(options, message):
    with pytest.raises(MtrlError, match=message) as exc:
        get_aggregator("moco", **options)
    assert "\n" not in str(exc.value)


def test_other_gradient_shapes_are_a_value_error():
    agg = get_aggregator("moco")
    agg(torch.randn(3, 5))
    with pytest.raises(ValueError, match="MoCo tracks gradient blocks"):
        agg(torch.randn(4, 5))


# --------------------------------------------------------------------------- through MT-SAC
T, B, OBS, ACT = 3, 8, 6 + 3, 2


def batch(seed: int = 0) -> dict[str, torch.Tensor]:
    return replay_batch(T, B, OBS, ACT, seed)


def agent() -> MTSAC:
    torch.manual_seed(0)
    surgery = SurgeryConfig(name="moco", options={"beta": 0.5, "gamma": 5.0})
    return MTSAC(OBS, ACT, T, AgentConfig(hidden=[16]), surgery)


def test_resume_through_mtsac_matches_an_uninterrupted_run():
    """Two updates, a weights-only checkpoint of the agent, then two more: the same as four."""
    straight = agent()
    for step in (0, 1):
        torch.manual_seed(step)
        straight.update(batch(step))
    buffer = io.BytesIO()
    torch.save(straight.state_dict(), buffer)
    resumed, forgetful = agent(), agent()
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    buffer.seek(0)  # a separate load: optimizers adopt the loaded tensors without a copy
    state = torch.load(buffer, weights_only=True)
    state["aggregators"] = {}  # the same agent without MoCo's state
    forgetful.load_state_dict(state)
    assert resumed.aggregators["critic"].step == 2
    for step in (2, 3):
        for a in (straight, resumed, forgetful):
            torch.manual_seed(step)
            a.update(batch(step))
    for x, y in zip(straight.critic.parameters(), resumed.critic.parameters(), strict=True):
        assert torch.equal(x, y)
    for x, y in zip(straight.actor.parameters(), resumed.actor.parameters(), strict=True):
        assert torch.equal(x, y)
    assert any(
        not torch.equal(x, y)
        for x, y in zip(straight.critic.parameters(), forgetful.critic.parameters(), strict=True)
    )
