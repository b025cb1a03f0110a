"""UPGrad and DualProj: torchjd, projections onto the dual cone (primal QP), edge cases."""

import numpy as np
import pytest
import torch
from matrices import SIZES, random_G
from qpsolvers import solve_qp
from torchjd.aggregation import DualProj as TorchJDDualProj
from torchjd.aggregation import UPGrad as TorchJDUPGrad
from torchjd.linalg import QuadprogProjector

from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, get_aggregator
from mtrl.surgery.aggregators import qp

METHODS = {"upgrad": TorchJDUPGrad, "dualproj": TorchJDDualProj}
EXACT = {"reg_eps": 0.0, "norm_eps": 0.0}


def singular_G(tasks: int, params: int, seed: int) -> torch.Tensor:
    """Random rows with a duplicated row, a zero row and an opposite row (as T allows)."""
    G = random_G(tasks, params, seed)
    G[1] = G[0]
    if tasks > 2:
        G[2] = 0.0
    if tasks > 4:
        G[3] = -0.5 * G[4]
    return G


def primal_projection(G: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """argmin ‖d - target‖² subject to G d >= 0, by quadprog in parameter space."""
    params = G.shape[1]
    d = solve_qp(
        np.eye(params), -target.numpy(), -G.numpy(), np.zeros(G.shape[0]), solver="quadprog"
    )
    return torch.from_numpy(d)


@pytest.mark.parametrize(("tasks", "params"), SIZES)
@pytest.mark.parametrize("name", list(METHODS))
def test_matches_torchjd(name, tasks, params):
    # Both solve the same regularised dual QP exactly (quadprog there, NNLS here); the gap is
    # rounding and the tie-break of qp.project_dual_cone (1e-14 tr(A), against the 1e-4
    # regularisation): worst seen 1e-10 relative, so 1e-8 leaves room.
    for seed in range(3):
        G = random_G(tasks, params, seed)
        ours, theirs = get_aggregator(name)(G), METHODS[name]()(G)
        assert (ours - theirs).norm() <= 1e-8 * theirs.norm() + 1e-12 * G.norm(dim=1).max()
    options = {"reg_eps": 1e-2, "norm_eps": 1e-6}
    theirs = METHODS[name](projector=QuadprogProjector(**options))(G)
    ours = get_aggregator(name, **options)(G)
    assert (ours - theirs).norm() <= 1e-8 * theirs.norm()


@pytest.mark.parametrize(("tasks", "params"), [(5, 3), (10, 20), (50, 200)])
def test_exact_projections_match_the_primal_qp(tasks, params):
    # reg_eps = 0: UPGrad is the mean of the projections of the rows onto the dual cone, DualProj
    # the projection of the mean, each computed here by quadprog in parameter space (which fails
    # where the cone is {0}, as for most T >> P).
    for seed in range(2):
        G = random_G(tasks, params, seed)
        projections = torch.stack([primal_projection(G, g) for g in G])
        scale = G.norm(dim=1).max()
        upgrad = get_aggregator("upgrad", **EXACT)(G)
        assert (upgrad - projections.mean(0)).norm() <= 1e-8 * scale
        dualproj = get_aggregator("dualproj", **EXACT)(G)
        assert (dualproj - primal_projection(G, G.mean(0))).norm() <= 1e-8 * scale


@pytest.mark.parametrize(("tasks", "params"), SIZES)
@pytest.mark.parametrize("name", list(METHODS))
def test_no_task_conflicts(name, tasks, params):
    # Exact (reg_eps = 0): g_i·d >= 0 up to rounding, singular Gramians included. Default:
    # the regularisation lets task i conflict by at most reg_eps tr(A) w_i.
    for seed in range(3):
        for G in (random_G(tasks, params, seed), singular_G(tasks, params, seed)):
            scale = G.norm(dim=1).max() ** 2
            d = get_aggregator(name, **EXACT)(G)
            assert (G @ d >= -1e-11 * scale).all()
            result = get_aggregator(name).aggregate(G)
            bound = -1e-4 * (G @ G.T).trace() * result.weights
            assert (G @ result.direction >= bound - 1e-11 * scale).all()
            assert result.weights.abs().max() < 1e3


def test_dualproj_satisfies_the_projection_conditions():
    # d is the projection of the mean onto {G d >= 0} iff d - mean = Gᵀλ with λ >= 0,
    # G d >= 0 and λ_i (G d)_i = 0 (convex QP); here λ = w - 1/T.
    for seed in range(5):
        G = singular_G(10, 6, seed)
        result = get_aggregator("dualproj", **EXACT).aggregate(G)
        lam = result.weights - 1 / 10
        scale = G.norm(dim=1).max() ** 2
        assert (lam >= 0).all()
        assert torch.allclose(result.direction - G.mean(0), lam @ G, atol=1e-12)
        assert (lam * (G @ result.direction)).abs().max() < 1e-11 * scale


@pytest.mark.parametrize("name", list(METHODS))
def test_a_wrong_nnls_answer_falls_back_to_bvls(name, monkeypatch):
    # scipy's NNLS has had regressions (1.12-1.15): an answer failing the KKT check is replaced.
    G = random_G(10, 20, 0)
    expected = get_aggregator(name)(G)
    monkeypatch.setattr(qp, "nnls", lambda matrix, rhs, maxiter: (np.zeros(matrix.shape[1]), 0.0))
    assert (get_aggregator(name)(G) - expected).norm() <= 1e-8 * expected.norm()


@pytest.mark.parametrize("name", list(METHODS))
def test_mean_when_no_task_conflicts(name):
    gen = torch.Generator().manual_seed(0)
    for tasks in (2, 5, 50):
        G = torch.rand(tasks, 20, generator=gen, dtype=torch.float64)  # every g_i·g_j > 0
        for options in ({}, EXACT):
            assert torch.allclose(get_aggregator(name, **options)(G), G.mean(0), atol=1e-12)


@pytest.mark.parametrize("name", list(METHODS))
def test_scale_and_degenerate_inputs(name):
    agg = get_aggregator(name)
    g = torch.tensor([[0.5, -1.0, 2.0]])
    assert torch.equal(agg(g), g[0])  # T = 1: that gradient
    for dtype in (torch.float32, torch.float64):
        same = g.to(dtype).repeat(6, 1)  # identical tasks: that gradient
        tol = 1e-6 if dtype == torch.float32 else 1e-12
        assert torch.allclose(agg(same), same[0], rtol=tol)
        assert torch.allclose(get_aggregator(name, **EXACT)(same), same[0], rtol=tol)
    assert torch.equal(agg(torch.zeros(4, 3)), torch.zeros(3))
    assert torch.equal(get_aggregator(name, **EXACT)(torch.zeros(4, 3)), torch.zeros(3))
    opposite = torch.tensor([[1.0, -2.0], [-1.0, 2.0]], dtype=torch.float64)
    assert get_aggregator(name, **EXACT)(opposite).norm() < 1e-12
    # torchjd's norm_eps is absolute: below it (tr(G Gᵀ) < 1e-4 here) the mean is returned.
    small = random_G(5, 7, 0) * 1e-4
    assert torch.allclose(agg(small), small.mean(0), rtol=1e-12)
    assert torch.allclose(agg(small), METHODS[name]()(small), rtol=1e-12)


@pytest.mark.parametrize("name", list(METHODS))
def test_non_finite_gradient_raises(name):
    G = random_G(4, 5, 2)
    G[1, 0] = float("inf")
    with pytest.raises(NonFiniteGradientError, match="task 1"):
        get_aggregator(name)(G)


@pytest.mark.parametrize("name", list(METHODS))
def test_bad_options_are_one_line_errors(name):
    with pytest.raises(MtrlError, match=r"^[^\n]*reg_eps[^\n]*$"):
        get_aggregator(name, reg_eps=-1e-4)
    with pytest.raises(MtrlError, match=r"^[^\n]*norm_eps[^\n]*$"):
        get_aggregator(name, norm_eps=float("nan"))
    with pytest.raises(MtrlError, match=r"^[^\n]*has no option 'pref_vector'[^\n]*$"):
        get_aggregator(name, pref_vector=[0.5, 0.5])
    with pytest.raises(MtrlError, match=r"^[^\n]*solver[^\n]*$"):
        get_aggregator(name, solver="gpu")
    assert get_aggregator(name, reg_eps=0, norm_eps=1e-6, solver="device").options() == {
        "reg_eps": 0.0,
        "norm_eps": 1e-6,
        "solver": "device",
    }
