"""SDMGrad against torchjd's SDMGradWeighting and the official Meta-World code, and the problem its
inner loop solves.

torchjd normalises A by (mean √A_ii)² + 1e-8, the official Meta-World code (followed here) by
(mean √(A_ii + 1e-4))². Given k A with k = 1e-8 / (s_ours - s_torchjd), s the squared means,
torchjd's normalised matrix equals ours, so both run the same iteration. Tolerances: with the
official lr = 10 the projected iteration is expansive on these matrices (lr λ_max ≈ 15-60), so
rounding differences (a different summation order) grow ~3x per step: observed <= 1e-10 after
20 steps, hence 1e-8; with lr = 1 it contracts and 1e-12 holds over many calls.
"""

import io

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from torchjd.aggregation import SDMGradWeighting

from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, get_aggregator
from mtrl.surgery.aggregators.sdmgrad import project_onto_simplex

CASES = [(2, 3), (2, 20), (2, 200), (5, 3), (5, 20), (5, 200), (10, 3), (10, 20), (10, 200)]
CASES += [(50, 3), (50, 20), (50, 200)]


def _matrix(tasks: int, params: int, seed: int) -> torch.Tensor:
    return torch.randn(
        tasks, params, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )


def _for_torchjd(gram: torch.Tensor) -> torch.Tensor:
    """k A such that torchjd's normalisation of it is the official one of A."""
    diag = torch.diag(gram)
    ours = torch.sqrt(diag + 1e-4).mean() ** 2
    theirs = torch.sqrt(diag).mean() ** 2
    return gram * (1e-8 / (ours - theirs))


@pytest.mark.parametrize(("tasks", "params"), CASES)
def test_matches_torchjd(tasks, params):
    for seed in range(3):
        G = _matrix(tasks, params, seed)
        result = get_aggregator("sdmgrad").aggregate(G)
        reference = SDMGradWeighting(lambda_=0.6)
        expected = reference(_for_torchjd(G @ G.T))
        torch.testing.assert_close(result.weights, expected, rtol=0, atol=1e-8)


def test_sequence_matches_torchjd_with_a_contracting_step():
    """Both keep w across calls (and restart the momentum)."""
    ours = get_aggregator("sdmgrad", lamda=0.3, lr=1.0, niter=15)
    reference = SDMGradWeighting(lambda_=0.3, lr=1.0, n_iter=15)
    base = _matrix(8, 50, 0)
    for call in range(8):
        G = base + 0.5 * _matrix(8, 50, 10 + call)
        expected = reference(_for_torchjd(G @ G.T))
        torch.testing.assert_close(ours.aggregate(G).weights, expected, rtol=0, atol=1e-12)


def _official_meta_world(agent, grads: torch.Tensor, lamda: float) -> torch.Tensor:
    """``Agent.sdmgrad`` of OptMN-Lab/sdmgrad ``mtrl_files/sdmgrad.py``, in float64."""
    num_tasks = grads.shape[0]
    GG = torch.mm(grads, grads.t())
    scale = torch.mean(torch.sqrt(torch.diag(GG) + 1e-4))
    GG = GG / scale.pow(2)
    Gg = torch.mean(GG, dim=1)
    gg = torch.mean(Gg)
    if not hasattr(agent, "w"):
        agent.w = torch.ones(num_tasks, dtype=torch.float64) / num_tasks
    w = agent.w
    w.requires_grad = True
    w_opt = torch.optim.SGD([w], lr=10, momentum=0.5)
    for _ in range(20):
        w_opt.zero_grad()
        obj = 0.5 * torch.dot(w, torch.mv(GG, w)) + lamda * torch.dot(w, Gg) + 0.5 * lamda**2 * gg
        obj.backward()
        w_opt.step()
        w.data.copy_(torch.from_numpy(project_onto_simplex(w.data.numpy())))
    w.requires_grad = False
    g0 = torch.mean(grads, dim=0)
    gw = torch.mv(grads.t(), w)
    return (gw + lamda * g0) / (1 + lamda)


def test_matches_the_official_meta_world_code():
    class Agent:
        pass

    agent, ours = Agent(), get_aggregator("sdmgrad")
    base = _matrix(10, 100, 3)
    for call in range(2):
        G = base + 0.3 * _matrix(10, 100, 20 + call)
        expected = _official_meta_world(agent, G, 0.6)
        torch.testing.assert_close(ours(G), expected, rtol=0, atol=1e-8)


def _simplex_minimiser(A: np.ndarray, pull: np.ndarray) -> np.ndarray:
    tasks = A.shape[0]
    return minimize(
        lambda w: 0.5 * w @ A @ w + w @ pull,
        np.full(tasks, 1 / tasks),
        jac=lambda w: A @ w + pull,
        method="SLSQP",
        bounds=[(0, 1)] * tasks,
        constraints={"type": "eq", "fun": lambda w: w.sum() - 1},
        options={"ftol": 1e-14, "maxiter": 1000},
    ).x


@pytest.mark.parametrize(("tasks", "params"), CASES)
def test_device_path_takes_the_host_steps(tasks, params):
    """solver=device (what a CUDA graph's update takes) against the host path, one call at a
    time from the same w (the host's, handed over as a checkpoint would): the official lr = 10
    amplifies rounding (see above; over several calls two host runs on Gramians 1e-15 apart
    end up to 1 apart), hence one call, and from a w off 1/T one call amplifies more: 1e-6 of
    the largest weight (observed <= 4e-8); and the weights after a zero gradient."""
    host, device = (
        get_aggregator("sdmgrad", solver="host"),
        get_aggregator("sdmgrad", solver="device"),
    )
    for call in range(3):
        G = _matrix(tasks, params, 20 + call)
        G[0] *= 0.0 if call == 2 else 1.0
        device.load_state_dict(host.state_dict())
        want, got = host.aggregate(G).weights, device.aggregate(G).weights
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6 * float(want.abs().max()))
        np.testing.assert_allclose(device.state_dict()["w"], host.w, rtol=0, atol=1e-6)


def test_device_path_keeps_its_w_across_calls_and_checkpoints():
    """With a contracting step the device path follows the host's over many calls (1e-12),
    its w lives on the device between calls, and a restored copy of its state continues
    exactly as the original does."""
    options = {"lamda": 0.3, "lr": 1.0, "niter": 15}
    host = get_aggregator("sdmgrad", solver="host", **options)
    device = get_aggregator("sdmgrad", solver="device", **options)
    base = _matrix(8, 50, 0)
    for call in range(8):
        G = base + 0.5 * _matrix(8, 50, 10 + call)
        want, got = host.aggregate(G).weights, device.aggregate(G).weights
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    assert device.w is None and device.device_w is not None
    restored = get_aggregator("sdmgrad", solver="device", **options)
    restored.load_state_dict(device.state_dict())
    G = base + 0.5 * _matrix(8, 50, 30)
    assert torch.equal(restored.aggregate(G).weights, device.aggregate(G).weights)


def test_converged_weights_minimise_the_direction_oriented_objective():
    """With a small step and many iterations the inner loop reaches
    argmin_{w in simplex} ½ wᵀAw + λ wᵀA1/T (A the normalised Gramian)."""
    lamda = 0.6
    for seed in range(3):
        G = _matrix(6, 8, seed)
        agg = get_aggregator("sdmgrad", lamda=lamda, lr=0.1, niter=3000)
        weights = agg.aggregate(G).weights.numpy()
        A = (G @ G.T).numpy()
        A /= np.mean(np.sqrt(np.diag(A) + 1e-4)) ** 2
        pull = lamda * A.mean(axis=1)
        solution = _simplex_minimiser(A, pull)
        np.testing.assert_allclose(agg.w, solution, atol=1e-6)
        np.testing.assert_allclose(weights, (solution + lamda / 6) / (1 + lamda), atol=1e-6)
        assert agg.w.min() >= 0 and abs(agg.w.sum() - 1) < 1e-12


def test_projection_onto_the_simplex():
    rng = np.random.default_rng(0)
    for _ in range(20):
        v = rng.normal(size=7) * 3
        p = project_onto_simplex(v)
        assert p.min() >= 0 and abs(p.sum() - 1) < 1e-12
        # optimality: v - p is constant on the support and no larger off it
        support = p > 0
        shift = (v - p)[support]
        assert np.ptp(shift) < 1e-12
        assert np.all(v[~support] <= shift[0] + 1e-12)


def test_identical_gradients_and_single_task():
    g = _matrix(1, 6, 1)
    torch.testing.assert_close(get_aggregator("sdmgrad")(g.repeat(4, 1)), g[0])
    assert torch.equal(get_aggregator("sdmgrad")(g), g[0])
    assert torch.equal(get_aggregator("sdmgrad")(torch.zeros(3, 4)), torch.zeros(4))


def test_non_finite_gradients_raise():
    G = _matrix(3, 6, 1)
    G[2, 1] = float("nan")
    with pytest.raises(NonFiniteGradientError, match="task 2"):
        get_aggregator("sdmgrad")(G)


@pytest.mark.parametrize(
    "options",
    [{"lamda": "abc"}, {"lamda": -0.1}, {"lr": 0.0}, {"momentum": 1.0}, {"niter": 0}],
)
def test_bad_options_are_one_line_errors(options):
    with pytest.raises(MtrlError) as info:
        get_aggregator("sdmgrad", **options)
    assert "\n" not in str(info.value)
    assert next(iter(options)) in str(info.value)


def test_state_round_trip_through_a_checkpoint():
    inputs = [_matrix(5, 30, 40 + k) for k in range(6)]
    agg = get_aggregator("sdmgrad")
    for G in inputs[:3]:
        agg(G)
    buffer = io.BytesIO()
    torch.save(agg.state_dict(), buffer)
    buffer.seek(0)
    resumed = get_aggregator("sdmgrad")
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    for G in inputs[3:]:
        assert torch.equal(resumed(G), agg(G))
