"""FairGrad against torchjd's port of the official code, its defining equation, and the official
Meta-World code's SGD solver.

Tolerance against torchjd: 1e-9 relative. Both call ``scipy.optimize.least_squares`` the same
way on the same residual, written (1/w)^(1/α) as the official code here and w^(-1/α) in
torchjd: only rounding differs (observed <= 6e-13). Cases have T <= P: with T > P the Gramian is
singular, the system may have no solution and least squares stops where rounding leads it.
"""

import numpy as np
import pytest
import torch
from torchjd.aggregation import FairGradWeighting

from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, get_aggregator

CASES = [(2, 3), (2, 20), (2, 200), (5, 20), (5, 200), (10, 20), (10, 200), (50, 200)]


def _matrix(tasks: int, params: int, seed: int) -> torch.Tensor:
    return torch.randn(
        tasks, params, dtype=torch.float64, generator=torch.Generator().manual_seed(seed)
    )


@pytest.mark.parametrize(("tasks", "params"), CASES)
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_matches_torchjd_and_solves_the_system(tasks, params, alpha):
    for seed in range(3):
        G = _matrix(tasks, params, seed)
        result = get_aggregator("fairgrad", alpha=alpha, solver="least_squares").aggregate(G)
        expected = FairGradWeighting(alpha=alpha)(G @ G.T)
        torch.testing.assert_close(result.weights, expected, rtol=1e-9, atol=0)
        w = result.weights.numpy()
        assert np.all(w > 0)
        target = w ** (-1.0 / alpha)  # the paper's G Gᵀ w = w^(-1/α)
        residual = result.gram.numpy() @ w - target
        assert np.abs(residual).max() <= 1e-6 * np.abs(target).max()


def test_default_alpha_is_the_official_meta_world_value():
    assert get_aggregator("fairgrad").options() == {"alpha": 2.0, "solver": "sgd"}


def test_alpha_zero_is_the_mean():
    G = _matrix(4, 9, 0)
    torch.testing.assert_close(get_aggregator("fairgrad", alpha=0)(G), G.mean(0))


@pytest.mark.parametrize("alpha", [1.0, 2.0, 5.0])
def test_identical_gradients_and_scale(alpha):
    g = _matrix(1, 6, 1)[0]
    tasks = 5
    w = (tasks * float(g @ g)) ** (-alpha / (1 + alpha))
    direction = get_aggregator("fairgrad", alpha=alpha, solver="least_squares")(g.repeat(tasks, 1))
    torch.testing.assert_close(direction, tasks * w * g, rtol=1e-6, atol=0)
    G, s = _matrix(4, 20, 2), 3.0
    w1 = get_aggregator("fairgrad", alpha=alpha, solver="least_squares").aggregate(G).weights
    w2 = get_aggregator("fairgrad", alpha=alpha, solver="least_squares").aggregate(s * G).weights
    torch.testing.assert_close(w2, w1 * s ** (-2 * alpha / (1 + alpha)), rtol=1e-6, atol=0)


def _official_meta_world_sgd(grads: torch.Tensor, alpha: float) -> torch.Tensor:
    """``Agent.fairgrad`` of OptMN-Lab/fairgrad ``mtrl_files/fairgrad.py``, in float64."""
    num_tasks = grads.shape[0]
    w = torch.ones(num_tasks, dtype=torch.float64) / num_tasks
    GG = torch.mm(grads, grads.t())
    w_best, obj_best = None, np.inf
    w.requires_grad = True
    optimizer = torch.optim.SGD([w], lr=0.1, momentum=0.5)
    for _ in range(20):
        optimizer.zero_grad()
        obj = torch.linalg.norm(torch.mv(GG, w) - torch.pow(1 / (w + 1e-8), 1 / alpha)) ** 2
        if obj.item() < obj_best:
            obj_best = obj.item()
            w_best = w.clone()
        obj.backward()
        torch.nn.utils.clip_grad_norm_(w, max_norm=1.0)
        optimizer.step()
        w.data.clamp_(min=1e-8)
    return (grads * w_best.detach().view(-1, 1)).sum(0)


@pytest.mark.parametrize(("tasks", "params"), [(2, 3), (5, 20), (10, 200), (50, 200)])
def test_sgd_solver_is_the_official_meta_world_code(tasks, params):
    for seed in range(3):
        G = 0.05 * _matrix(tasks, params, seed)  # small gradients: several steps improve
        ours = get_aggregator("fairgrad", solver="sgd")(G)
        torch.testing.assert_close(ours, _official_meta_world_sgd(G, 2.0), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("tasks", [2, 5, 10, 50])
def test_sgd_device_weights_equal_the_host_ones(tasks):
    """The sgd solver's device path (a captured update's) gives the host's weights to 1e-10
    (worst seen 2e-11): P below and above T, gradient scales from the small ones where several
    steps improve to large ones, α from 0.5 to 5, a zero gradient, and α = 0 (the mean)."""
    aggregator = get_aggregator("fairgrad")
    for params in (tasks // 2 + 1, 200):
        for scale in (0.01, 0.05, 1.0, 10.0):
            G = scale * _matrix(tasks, params, seed=tasks + params)
            G[tasks // 2] *= 0.0 if scale == 1.0 else 1.0
            gram = G @ G.T
            for alpha in (0.0, 0.5, 2.0, 5.0):
                aggregator.alpha = alpha
                host, device = aggregator.weights(gram), aggregator.device_weights(gram)
                assert (device - host).abs().max() <= 1e-10 * host.abs().max(), (params, alpha)


def test_single_task_and_non_finite_gradients():
    g = _matrix(1, 5, 0)
    for solver in ("least_squares", "sgd"):
        assert torch.equal(get_aggregator("fairgrad", solver=solver)(g), g[0])
    G = _matrix(3, 6, 1)
    G[0, 3] = float("inf")
    with pytest.raises(NonFiniteGradientError, match="task 0"):
        get_aggregator("fairgrad")(G)


def test_zero_gradient_gives_a_finite_direction():
    G = _matrix(3, 6, 1)
    G[1] = 0.0  # its weight grows without bound but multiplies a zero row
    for solver in ("least_squares", "sgd"):
        assert torch.isfinite(get_aggregator("fairgrad", solver=solver)(G)).all()


@pytest.mark.parametrize("options", [{"alpha": "abc"}, {"alpha": -1.0}, {"solver": "adam"}])
def test_bad_options_are_one_line_errors(options):
    with pytest.raises(MtrlError) as info:
        get_aggregator("fairgrad", **options)
    assert "\n" not in str(info.value)
    assert next(iter(options)) in str(info.value)
