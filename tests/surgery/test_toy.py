"""The CAGrad two-objective toy: formulas, gradients, the paper's qualitative behaviour, the CLI."""

import math

import pytest
import torch

from mtrl.surgery.toy import (
    average_optimum,
    main,
    optimize,
    pareto_set,
    toy_grads,
    toy_losses,
)

FLOOR_LOG = math.log(5e-6) + 6  # a valley's value on its floor, where the log is clamped


def _hand_losses(x1: float, x2: float) -> tuple[float, float]:
    """The official formulas written out with ``math``, independently of the module."""
    up, low = max(math.tanh(x2 / 2), 0.0), max(math.tanh(-x2 / 2), 0.0)
    v1 = math.log(max(abs(0.5 * (-x1 - 7) - math.tanh(-x2)), 5e-6)) + 6
    v2 = math.log(max(abs(0.5 * (-x1 + 3) + math.tanh(-x2) + 2), 5e-6)) + 6
    q1 = ((-x1 + 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    q2 = ((-x1 - 7) ** 2 + 0.1 * (-x2 - 8) ** 2) / 10 - 20
    return v1 * up + q1 * low, v2 * up + q2 * low


def test_losses_at_hand_computed_points():
    # on the x1 axis both switches are off
    assert toy_losses(torch.tensor([3.0, 0.0], dtype=torch.float64)).tolist() == [0.0, 0.0]
    # (0, -8): only the bowls, f = ((49 + 0) / 10 - 20) * tanh(4) for both
    f = toy_losses(torch.tensor([0.0, -8.0], dtype=torch.float64))
    assert torch.allclose(f, torch.full((2,), -15.1 * math.tanh(4.0), dtype=torch.float64))
    # (-5, 2): only the valleys; f1's log argument is -1 + tanh(2), f2's is 6 - tanh(2)
    f = toy_losses(torch.tensor([-5.0, 2.0], dtype=torch.float64))
    expected = [
        (math.log(1 - math.tanh(2.0)) + 6) * math.tanh(1.0),
        (math.log(6 - math.tanh(2.0)) + 6) * math.tanh(1.0),
    ]
    assert torch.allclose(f, torch.tensor(expected, dtype=torch.float64))


def test_losses_clamp_on_the_valley_floor():
    x2 = 3.0
    floor = torch.tensor([-7 + 2 * math.tanh(x2), x2], dtype=torch.float64)
    assert toy_losses(floor)[0].item() == pytest.approx(FLOOR_LOG * math.tanh(x2 / 2))


def test_losses_match_formulas_batched():
    points = [(-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0), (1.3, -0.7), (-2.0, 0.4)]
    f = toy_losses(torch.tensor(points, dtype=torch.float64))
    assert f.shape == (5, 2)
    expected = torch.tensor([_hand_losses(*p) for p in points], dtype=torch.float64)
    assert torch.allclose(f, expected, rtol=1e-12, atol=1e-12)


def test_closed_form_grads_match_autograd():
    gen = torch.Generator().manual_seed(0)
    x = (torch.rand(500, 2, generator=gen, dtype=torch.float64) - 0.5) * 22
    leaf = x.clone().requires_grad_(True)
    f = toy_losses(leaf)
    rows = [torch.autograd.grad(f[:, k].sum(), leaf, retain_graph=True)[0] for k in range(2)]
    assert torch.allclose(toy_grads(x), torch.stack(rows, dim=1), rtol=1e-10, atol=1e-10)


def test_optimum_and_pareto_set():
    x_star = average_optimum()
    assert x_star[0].item() == 0.0
    assert x_star[1].item() == pytest.approx(-8.3552, abs=1e-3)  # the official figure's value
    pareto = pareto_set()
    assert pareto[0, 0].item() == -7.0 and pareto[-1, 0].item() == 7.0
    assert (pareto[:, 1] - x_star[1]).abs().max() < 0.1


def test_trajectory_shape_and_start():
    traj = optimize("mean", [(-8.5, 7.5), (9.0, 9.0)], steps=5)
    assert traj.shape == (6, 2, 2)
    assert traj[0].tolist() == [[-8.5, 7.5], [9.0, 9.0]]


def _worst(traj: torch.Tensor, last: int = 200) -> float:
    """The worse objective, averaged over the last steps (the runs zigzag in the valleys)."""
    return toy_losses(traj[-last:, 0]).max(-1).values.mean().item()


def test_cagrad_leaves_the_valley_where_adam_on_the_mean_is_stuck():
    # From (-8.5, 7.5) the mean gradient falls into f1's steep valley and zigzags across its
    # floor (the paper: "gets stuck"); CAGrad lowers the worse objective markedly faster.
    start = [(-8.5, 7.5)]
    mean = optimize("mean", start, steps=1500)
    cagrad = optimize("cagrad", start, steps=1500)
    assert mean[-1, 0, 1] > 1.5  # still up in the valley (the bowls begin below x2 = 0)
    assert _worst(cagrad) < _worst(mean) - 1.0
    assert cagrad[-1, 0, 1] < mean[-1, 0, 1]


def test_pcgrad_stops_on_the_pareto_set_where_the_mean_reaches_the_optimum():
    # From (-8.5, -5) both land on the Pareto set; PCGrad stops where it lands (the paper:
    # "stops as soon as it reaches the Pareto set"), the mean goes on to the optimum.
    start = [(-8.5, -5.0)]
    best = toy_losses(average_optimum()).mean().item()
    mean = optimize("mean", start, steps=1500)
    pcgrad = optimize("pcgrad", start, steps=1500)
    assert toy_losses(mean[-1, 0]).mean().item() < best + 0.1
    assert torch.cdist(pcgrad[-1], pareto_set()).min() < 0.1
    assert toy_losses(pcgrad[-1, 0]).mean().item() > best + 3.0
    assert (pcgrad[-500:, 0] - pcgrad[-1, 0]).norm(dim=-1).max() < 0.1  # it no longer moves


def test_cli_writes_a_png(tmp_path, capsys):
    assert main(["--out", str(tmp_path), "--steps", "3", "--aggregators", "mean"]) == 0
    png = tmp_path / "toy.png"
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    out = capsys.readouterr().out
    assert "[toy] mean" in out and "(-8.5, 7.5)" in out
