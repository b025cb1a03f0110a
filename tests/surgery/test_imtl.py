"""IMTL-G: torchjd, the paper's (LibMTL's) closed form, equal projections, edge cases."""

import pytest
import torch
from matrices import SIZES, random_G
from torchjd.aggregation import IMTLG as TorchJDIMTLG

from mtrl.errors import MtrlError
from mtrl.surgery import NonFiniteGradientError, get_aggregator


def libmtl_imtl_g(G: torch.Tensor) -> torch.Tensor:
    """The paper's closed form as LibMTL writes it (``IMTL.backward``, gradient part)."""
    units = G / G.norm(dim=-1, keepdim=True)
    D = G[0:1] - G[1:]
    U = units[0:1] - units[1:]
    alpha = G[0] @ U.T @ torch.inverse(D @ U.T)
    return torch.cat([1 - alpha.sum().unsqueeze(0), alpha])


@pytest.mark.parametrize(("tasks", "params"), SIZES)
def test_matches_torchjd(tasks, params):
    # The same weights A⁺n / 1ᵀA⁺n and pseudo-inverse cutoff (T eps of the largest eigenvalue):
    # the gap is rounding (worst seen 1e-14 relative), T > P included.
    for seed in range(3):
        G = random_G(tasks, params, seed)
        ours, theirs = get_aggregator("imtl-g")(G), TorchJDIMTLG()(G)
        assert (ours - theirs).norm() <= 1e-10 * theirs.norm()


@pytest.mark.parametrize(("tasks", "params"), [(t, p) for t, p in SIZES if t <= p])
def test_matches_the_papers_closed_form(tasks, params):
    # Independent rows: the paper's formula (through LibMTL) gives the same weights; it inverts
    # a (T-1) x (T-1) matrix that can be ill-conditioned, hence 1e-8.
    for seed in range(3):
        G = random_G(tasks, params, seed)
        weights = get_aggregator("imtl-g").aggregate(G).weights
        assert torch.allclose(weights, libmtl_imtl_g(G), rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize(("tasks", "params"), [(t, p) for t, p in SIZES if t <= p])
def test_equal_projections_on_unit_gradients(tasks, params):
    for seed in range(3):
        G = random_G(tasks, params, seed)
        result = get_aggregator("imtl-g").aggregate(G)
        projections = G @ result.direction / G.norm(dim=1)
        assert torch.allclose(projections, projections.mean().expand(tasks), rtol=1e-10)
        assert torch.allclose(result.weights.sum(), torch.tensor(1.0, dtype=torch.float64))


def test_scale_and_degenerate_inputs():
    agg = get_aggregator("imtl-g")
    g = torch.tensor([[0.5, -1.0, 2.0]])
    assert torch.equal(agg(g), g[0])  # T = 1: that gradient
    for dtype in (torch.float32, torch.float64):
        for tasks in (2, 6, 50):  # identical tasks: that gradient (weights sum to 1)
            same = g.to(dtype).repeat(tasks, 1)
            tol = 1e-5 if dtype == torch.float32 else 1e-12
            assert torch.allclose(agg(same), same[0], rtol=tol)
            assert agg(same).dtype == dtype
    assert torch.equal(agg(torch.zeros(4, 3)), torch.zeros(3))
    # g and -g: no direction has equal non-zero projections; torchjd's answer, zero weights.
    opposite = torch.tensor([[1.0, -2.0], [-1.0, 2.0]], dtype=torch.float64)
    assert torch.equal(agg(opposite), torch.zeros(2))
    # A zero gradient gets weight 0; the others keep equal projections.
    G = random_G(4, 10, 3)
    G[1] = 0.0
    result = agg.aggregate(G)
    assert result.weights[1] == 0
    live = G[[0, 2, 3]]
    projections = live @ result.direction / live.norm(dim=1)
    assert torch.allclose(projections, projections[0].expand(3), rtol=1e-10)
    assert torch.allclose(result.direction, TorchJDIMTLG()(G), rtol=1e-10)
    base = agg(random_G(5, 7, 0))
    for factor in (1e-150, 1e150):  # the weights do not depend on the scale
        assert torch.allclose(agg(random_G(5, 7, 0) * factor) / factor, base, rtol=1e-10)


def test_float32_near_duplicates_use_the_cutoff_of_their_dtype():
    # 50 float32 gradients 1e-5 apart: their Gramian cannot resolve the differences. torchjd's
    # pinv cutoff in float32 drops that rounding noise (weights near 1/T, torchjd's direction);
    # a float64 cutoff inverts it (weights up to 1, a direction 1e-5 off, seen).
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(1, 500, generator=gen)
    G = g.repeat(50, 1) + 1e-5 * torch.randn(50, 500, generator=gen)
    result = get_aggregator("imtl-g").aggregate(G)
    assert result.weights.abs().max() < 2 / 50
    assert (result.direction - TorchJDIMTLG()(G)).norm() < 1e-6 * g.norm()


def test_negative_common_projection_is_kept_as_in_the_references():
    # 1ᵀA⁻¹n < 0 here: the equal projections are negative (the direction ascends every loss),
    # in the paper's formula and torchjd alike.
    G = torch.tensor(
        [[-1.105, 3.114, 2.024], [-4.426, 5.591, 3.906], [2.903, 4.176, 5.084]], dtype=torch.float64
    )
    result = get_aggregator("imtl-g").aggregate(G)
    projections = G @ result.direction / G.norm(dim=1)
    assert (projections < 0).all()
    assert torch.allclose(projections, projections[0].expand(3), rtol=1e-10)
    assert torch.allclose(result.weights, libmtl_imtl_g(G), rtol=1e-10)
    assert torch.allclose(result.direction, TorchJDIMTLG()(G), rtol=1e-10)


def test_non_finite_gradient_raises():
    G = random_G(4, 5, 2)
    G[0, 4] = float("nan")
    with pytest.raises(NonFiniteGradientError, match="task 0"):
        get_aggregator("imtl-g")(G)


def test_imtl_g_takes_no_options():
    with pytest.raises(MtrlError, match=r"^aggregator 'imtl-g' has no option 'rcond'[^\n]*$"):
        get_aggregator("imtl-g", rcond=1e-6)
