"""Aligned-MTL: torchjd and the official solver, aligned gradients, scale, edge cases."""

import numpy as np
import pytest
import torch
from matrices import SIZES, random_G
from torchjd.aggregation import AlignedMTL as TorchJDAlignedMTL

from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, get_aggregator
from mtrl.surgery.aggregators.aligned_mtl import aligned_mtl_transform

MODES = ("min", "median", "rmse")


def official_aligned_mtl(G: torch.Tensor, scale_mode: str) -> torch.Tensor:
    """SamsungLabs/MTL ``ProcrustesSolver.apply`` + ``AlignedMTLBalancer.step`` (torch.symeig,
    since removed from torch, replaced by torch.linalg.eigh)."""
    grads = G.T.unsqueeze(0)
    cov = torch.matmul(grads.permute(0, 2, 1), grads).mean(0)
    singulars, basis = torch.linalg.eigh(cov)
    tol = torch.max(singulars) * max(cov.shape[-2:]) * torch.finfo().eps
    rank = sum(singulars > tol)
    order = torch.argsort(singulars, dim=-1, descending=True)
    singulars, basis = singulars[order][:rank], basis[:, order][:, :rank]
    if scale_mode == "min":
        weights = basis * torch.sqrt(singulars[-1]).view(1, -1)
    elif scale_mode == "median":
        weights = basis * torch.sqrt(torch.median(singulars)).view(1, -1)
    else:
        weights = basis * torch.sqrt(singulars.mean())
    weights = weights / torch.sqrt(singulars).view(1, -1)
    weights = torch.matmul(weights, basis.T)
    return torch.matmul(grads, weights.unsqueeze(0))[0].sum(-1)


@pytest.mark.parametrize(("tasks", "params"), SIZES)
def test_matches_the_official_solver_and_torchjd(tasks, params):
    # The same eigen-decomposition: errors are rounding, amplified by 1/sqrt(λ) where T > P
    # leaves small eigenvalues (worst seen 3e-11 relative). torchjd averages: T times its result.
    for mode in MODES:
        for seed in range(3):
            G = random_G(tasks, params, seed)
            ours = get_aggregator("aligned-mtl", scale_mode=mode)(G)
            atol = 1e-9 * float(ours.norm())
            torch.testing.assert_close(ours, official_aligned_mtl(G, mode), rtol=0, atol=atol)
            jd = TorchJDAlignedMTL(scale_mode=mode)(G) * tasks
            torch.testing.assert_close(ours, jd, rtol=0, atol=atol)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("tasks", "params"), [(2, 3), (5, 20), (10, 200), (50, 200), (10, 3)])
def test_aligned_gradients_are_orthogonal_with_equal_norms(tasks, params, mode):
    G = random_G(tasks, params, 7)
    G[1] = -0.9 * G[0] + 0.1 * G[1]  # a strong conflict
    gram = G @ G.T
    aligned = aligned_mtl_transform(gram, mode) @ G
    eig = np.linalg.eigvalsh(gram.numpy())[-min(tasks, params) :]  # the nonzero eigenvalues
    scale = {"min": eig[0], "median": eig[(len(eig) - 1) // 2], "rmse": eig.mean()}[mode]
    if tasks <= params:  # full rank: orthogonal, every norm sqrt(scale)
        expected = scale * torch.eye(tasks, dtype=torch.float64)
    else:  # the projection onto the row span of G, times scale
        basis = torch.linalg.svd(G, full_matrices=False).U
        expected = scale * basis @ basis.T
    torch.testing.assert_close(aligned @ aligned.T, expected, rtol=0, atol=1e-9 * scale)
    direction = get_aggregator("aligned-mtl", scale_mode=mode)(G)
    torch.testing.assert_close(direction, aligned.sum(0), rtol=1e-10, atol=1e-10)


def test_min_scale_is_the_smallest_singular_value():
    G = random_G(4, 30, 3)
    aligned = aligned_mtl_transform(G @ G.T) @ G
    sigma_min = torch.linalg.svdvals(G)[-1]
    torch.testing.assert_close(aligned.norm(dim=1), sigma_min.expand(4), rtol=1e-10, atol=0)


def test_weights_give_the_direction():
    G = random_G(5, 40, 2)
    result = get_aggregator("aligned-mtl").aggregate(G)
    torch.testing.assert_close(result.weights @ G, result.direction, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_identical_gradients_give_T_times_the_gradient(dtype):
    g = torch.randn(1, 50, dtype=dtype)
    for mode in MODES:
        for tasks in (2, 5, 50):
            d = get_aggregator("aligned-mtl", scale_mode=mode)(g.repeat(tasks, 1))
            torch.testing.assert_close(d, tasks * g[0])


def test_float32_gradients_agree_with_float64():
    G = random_G(10, 300, 4)
    d32 = get_aggregator("aligned-mtl")(G.float()).double()
    d64 = get_aggregator("aligned-mtl")(G)
    assert float((d32 - d64).norm() / d64.norm()) < 1e-4


def test_single_task_and_zero_gradients():
    g = torch.randn(1, 5)
    assert torch.equal(get_aggregator("aligned-mtl")(g), g[0])
    assert torch.equal(get_aggregator("aligned-mtl")(torch.zeros(3, 4)), torch.zeros(4))
    G = torch.tensor([[1.0, 0.0], [0.0, 0.0], [0.0, 3.0]], dtype=torch.float64)
    assert torch.isfinite(get_aggregator("aligned-mtl")(G)).all()


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_gradients_raise(bad):
    G = torch.ones(3, 4)
    G[0, 3] = bad
    with pytest.raises(NonFiniteGradientError, match="task 0"):
        get_aggregator("aligned-mtl")(G)


def test_bad_scale_mode_is_one_line():
    with pytest.raises(MtrlError, match=r"scale_mode='max': must be min, median or rmse"):
        get_aggregator("aligned-mtl", scale_mode="max")
