"""The two-objective toy of CAGrad (Liu et al. 2021, Figure 1) for every registered aggregator.

Run ``python -m mtrl.surgery.toy --out runs/toy``: it optimises x = (x1, x2) from the paper's
three starting points, with the two objectives' gradients G [2, 2] combined by each aggregator
and fed to Adam, draws the trajectories on the contours of the average loss into ``toy.png`` and
prints where each run ended.

The problem follows the official ``toy.py`` of Cranial-XIX/CAGrad: the objectives (log-shaped
valleys switched on by tanh(x2/2) above the x1 axis, quadratic bowls switched on by tanh(-x2/2)
below it, the log's argument clamped at 5e-6), the starts (-8.5, 7.5), (-8.5, -5), (9, 9), and
CAGrad with c=0.5 and the direction divided by 1+c (our ``rescale=2``), all fed to Adam.

The official run takes 100 000 Adam steps at lr 0.001 with the default betas (0.9, 0.999):
several minutes per method here. We default to 7 000 steps at lr 0.006 with betas (0.9, 0.99).
With β2=0.999 the huge gradients at the valley floors keep Adam's second moment inflated for
~20k steps, so nothing leaves the valleys in a short run; β2=0.99 shortens that memory, and
lr=0.006 is still small enough that plain Adam (``mean``) zigzags across the valley floor and
stays stuck from the two upper starts, as in the paper, while CAGrad escapes and reaches the
optimum of the average loss. ``--lr 0.001 --beta2 0.999 --steps 100000`` is the official setting.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mtrl.surgery.aggregators import (
    Aggregator,
    aggregator_class,
    get_aggregator,
    list_aggregators,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

STARTS: tuple[tuple[float, float], ...] = ((-8.5, 7.5), (-8.5, -5.0), (9.0, 9.0))
"""The paper's three initial points."""

LOG_FLOOR = 5e-6
"""The official clamp of the log-valley argument (keeps the log finite)."""

TOY_OPTIONS: dict[str, dict[str, float | int]] = {"cagrad": {"c": 0.5, "rescale": 2}}
"""Per-aggregator options as in the paper's figure (c=0.5, official toy divides by 1+c)."""

DEFAULT_STEPS = 7000
DEFAULT_LR = 0.006
DEFAULT_BETA2 = 0.99


def toy_losses(x: Tensor) -> Tensor:
    """The two objectives (f1, f2) at points x [..., 2] -> [..., 2]."""
    x1, x2 = x[..., 0], x[..., 1]
    valley1 = torch.log(torch.clamp((0.5 * (-x1 - 7) - torch.tanh(-x2)).abs(), LOG_FLOOR)) + 6
    valley2 = torch.log(torch.clamp((0.5 * (-x1 + 3) + torch.tanh(-x2) + 2).abs(), LOG_FLOOR)) + 6
    bowl1 = ((x1 - 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
    bowl2 = ((x1 + 7) ** 2 + 0.1 * (x2 + 8) ** 2) / 10 - 20
    upper = torch.clamp(torch.tanh(0.5 * x2), min=0)
    lower = torch.clamp(torch.tanh(-0.5 * x2), min=0)
    return torch.stack([valley1 * upper + bowl1 * lower, valley2 * upper + bowl2 * lower], dim=-1)


def toy_grads(x: Tensor) -> Tensor:
    """Gradients G [..., 2 tasks, 2 coordinates] of (f1, f2) at points x [..., 2], in closed form.

    Written out by hand because autograd costs ~10x more per step on such tiny tensors; the
    tests check it against ``torch.autograd``. Clamped pieces have zero gradient, as in autograd.
    """
    x1, x2 = x[..., 0], x[..., 1]
    t, sech2 = torch.tanh(x2), 1 - torch.tanh(x2) ** 2
    u = torch.stack([0.5 * (-x1 - 7) + t, 0.5 * (-x1 + 3) - t + 2], dim=-1)
    live = (u.abs() > LOG_FLOOR).to(x.dtype)
    inv = live / torch.where(live > 0, u, torch.ones_like(u))
    sign = torch.tensor([1.0, -1.0], dtype=x.dtype)
    valley = torch.log(torch.clamp(u.abs(), LOG_FLOOR)) + 6
    valley_dx1, valley_dx2 = -0.5 * inv, sign * sech2[..., None] * inv
    centre = torch.tensor([7.0, -7.0], dtype=x.dtype)
    bowl = ((x1[..., None] - centre) ** 2 + 0.1 * (x2[..., None] + 8) ** 2) / 10 - 20
    bowl_dx1, bowl_dx2 = (x1[..., None] - centre) / 5, 0.02 * (x2[..., None] + 8).expand_as(bowl)
    half = torch.tanh(0.5 * x2)
    half_d = 0.5 * (1 - half**2)
    upper, upper_d = torch.clamp(half, min=0), torch.where(half > 0, half_d, 0.0)
    lower, lower_d = torch.clamp(-half, min=0), torch.where(half < 0, -half_d, 0.0)
    up, lo = upper[..., None], lower[..., None]
    dx1 = valley_dx1 * up + bowl_dx1 * lo
    dx2 = valley_dx2 * up + valley * upper_d[..., None] + bowl_dx2 * lo + bowl * lower_d[..., None]
    return torch.stack([dx1, dx2], dim=-1)


def optimize(
    name: str,
    starts: Tensor | Sequence[Sequence[float]] = STARTS,
    steps: int = DEFAULT_STEPS,
    lr: float = DEFAULT_LR,
    beta2: float = DEFAULT_BETA2,
) -> Tensor:
    """Adam on the direction of aggregator ``name`` from every start; the trajectory
    [steps+1, n_starts, 2].

    Each start has its own aggregator (stateful methods keep state per run); Adam is
    element-wise, so one optimizer over all starts equals one per start.
    """
    x = torch.as_tensor(starts, dtype=torch.float64).clone().requires_grad_(True)
    aggregators = [build_aggregator(name) for _ in range(x.shape[0])]
    opt = torch.optim.Adam([x], lr=lr, betas=(0.9, beta2))
    traj = [x.detach().clone()]
    for _ in range(steps):
        G = toy_grads(x.detach())
        x.grad = torch.stack([agg(g) for agg, g in zip(aggregators, G, strict=True)])
        opt.step()
        traj.append(x.detach().clone())
    return torch.stack(traj)


def average_optimum() -> Tensor:
    """The minimiser of (f1+f2)/2: x1=0 by symmetry, x2 by a fine 1-D search (about -8.355)."""
    x2 = torch.linspace(-9.5, -7.5, 20001, dtype=torch.float64)
    pts = torch.stack([torch.zeros_like(x2), x2], dim=-1)
    return pts[toy_losses(pts).mean(-1).argmin()]


def pareto_set(n: int = 201) -> Tensor:
    """Points [n, 2] of the Pareto set: minimisers of w f1 + (1-w) f2 for w in [0, 1].

    In the lower half both objectives are bowls, so x1 = 7(2w-1); x2 comes from a grid search.
    """
    w = torch.linspace(0, 1, n, dtype=torch.float64)[:, None]
    x1 = (7 * (2 * w - 1)).expand(n, 2001)
    x2 = torch.linspace(-9.5, -7.5, 2001, dtype=torch.float64).expand(n, 2001)
    f = toy_losses(torch.stack([x1, x2], dim=-1))
    scalarised = w * f[..., 0] + (1 - w) * f[..., 1]
    best = scalarised.argmin(dim=1)
    return torch.stack([x1[:, 0], x2[0, best]], dim=-1)


def build_aggregator(name: str) -> Aggregator:
    """The aggregator with the toy's options (seeded when it takes a seed)."""
    return get_aggregator(name, seed=0, **TOY_OPTIONS.get(name, {}))


@dataclass
class Outcome:
    """Where one run ended."""

    aggregator: str
    start: tuple[float, float]
    end: tuple[float, float]
    f1: float
    f2: float
    to_optimum: float
    to_pareto: float

    @property
    def average(self) -> float:
        return (self.f1 + self.f2) / 2

    @property
    def worst(self) -> float:
        return max(self.f1, self.f2)


def outcomes(name: str, traj: Tensor, pareto: Tensor, optimum: Tensor) -> list[Outcome]:
    """Summarise the end of each start's trajectory [steps+1, n, 2]."""
    ends = traj[-1]
    f = toy_losses(ends)
    to_opt = (ends - optimum).norm(dim=-1)
    to_pareto = torch.cdist(ends, pareto).min(dim=1).values
    return [
        Outcome(
            name,
            (float(traj[0, i, 0]), float(traj[0, i, 1])),
            (float(ends[i, 0]), float(ends[i, 1])),
            float(f[i, 0]),
            float(f[i, 1]),
            float(to_opt[i]),
            float(to_pareto[i]),
        )
        for i in range(ends.shape[0])
    ]


def format_table(rows: list[Outcome], pareto_tol: float = 0.1) -> str:
    """A plain-text table of the outcomes."""
    head = (
        f"{'aggregator':<10} {'start':>13} {'end':>15} {'f1':>8} {'f2':>8} "
        f"{'avg':>8} {'|x-x*|':>7} {'pareto':>6}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        start = f"({r.start[0]:g}, {r.start[1]:g})"
        end = f"({r.end[0]:.2f}, {r.end[1]:.2f})"
        on = "yes" if r.to_pareto < pareto_tol else "no"
        lines.append(
            f"{r.aggregator:<10} {start:>13} {end:>15} {r.f1:8.3f} {r.f2:8.3f} "
            f"{r.average:8.3f} {r.to_optimum:7.3f} {on:>6}"
        )
    return "\n".join(lines)


COLORS = ("tab:red", "tab:blue", "tab:orange", "tab:purple", "tab:brown")


def draw_panel(
    ax: Axes,
    name: str,
    traj: Tensor,
    contours: tuple[Tensor, Tensor, Tensor],
    pareto: Tensor,
    optimum: Tensor,
) -> None:
    """One aggregator's panel: contours, Pareto set, optimum, start/end markers, trajectories."""
    ax.contour(*contours, levels=20, cmap="viridis", linewidths=0.8)
    ax.plot(pareto[:, 0], pareto[:, 1], color="gray", linewidth=5, alpha=0.6, zorder=1)
    for i in range(traj.shape[1]):
        color = COLORS[i % len(COLORS)]
        start = f"({traj[0, i, 0]:g}, {traj[0, i, 1]:g})"
        ax.plot(traj[:, i, 0], traj[:, i, 1], color=color, linewidth=1.6, zorder=3, label=start)
        ax.plot(*traj[0, i].tolist(), marker="o", markersize=7, color="k", zorder=6)
        end = traj[-1, i].tolist()
        ax.plot(*end, marker="X", markersize=9, color=color, markeredgecolor="k", zorder=6)
    ax.plot(*optimum.tolist(), marker="*", markersize=13, color="k", mec="w", zorder=7)
    reached = int(((traj[-1] - optimum).norm(dim=-1) < 0.1).sum())
    ax.set_title(f"{name}: {reached}/{traj.shape[1]} starts reach the optimum", fontsize=10)
    span = float(contours[0].max())
    ax.set(xlim=(-span, span), ylim=(-span, span), xlabel="x1", ylabel="x2", aspect="equal")


def plot(
    trajs: dict[str, Tensor], pareto: Tensor, optimum: Tensor, path: Path, span: float = 10.5
) -> None:
    """A grid of panels, one per aggregator, saved as a PNG at ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = torch.linspace(-span, span, 300, dtype=torch.float64)
    X2, X1 = torch.meshgrid(grid, grid, indexing="ij")
    contours = (X1, X2, toy_losses(torch.stack([X1, X2], dim=-1)).mean(-1))
    cols = min(len(trajs), 4)
    rows = math.ceil(len(trajs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 4.3 * rows), squeeze=False)
    for ax, (name, traj) in zip(axes.flat, trajs.items(), strict=False):
        draw_panel(ax, name, traj, contours, pareto, optimum)
    axes.flat[0].legend(title="start", fontsize=7, title_fontsize=7, loc="upper center")
    for ax in list(axes.flat)[len(trajs) :]:
        ax.axis("off")
    fig.suptitle(
        "CAGrad toy: contours of (f1+f2)/2; gray = Pareto set, ★ = optimum of the average, "
        "● start, ✕ end",
        fontsize=10,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m mtrl.surgery.toy",
        description=(
            "The two-objective toy of CAGrad (Liu et al. 2021, Figure 1): optimise x in R^2 from "
            "the paper's three starts with Adam on each aggregator's combination of the two "
            "objectives' gradients, plot the trajectories over the average loss into "
            "OUT/toy.png and print where each run ended (final f1, f2, distance to the optimum "
            "of the average loss, whether it reached the Pareto set)."
        ),
    )
    parser.add_argument("--out", type=Path, default=Path("runs/toy"), help="output folder")
    parser.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help=f"Adam steps per run (default {DEFAULT_STEPS}; the paper: 100000)",
    )
    parser.add_argument(
        "--lr", type=float, default=DEFAULT_LR, help=f"Adam lr (default {DEFAULT_LR}; paper: 0.001)"
    )
    parser.add_argument(
        "--beta2",
        type=float,
        default=DEFAULT_BETA2,
        help=f"Adam's beta2 (default {DEFAULT_BETA2}; the paper: 0.999, which needs ~1e5 steps)",
    )
    parser.add_argument(
        "--aggregators",
        default=None,
        help="comma-separated aggregator names (default: every registered one that uses "
        f"gradients; now: {', '.join(list_aggregators())})",
    )
    return parser.parse_args(argv)


def selected(names: str | None) -> list[str]:
    """The aggregators to run: the given names, or every registered gradient aggregator."""
    if names:
        return [n.strip() for n in names.split(",") if n.strip()]
    return [n for n in list_aggregators() if aggregator_class(n).kind == "gradient"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; returns 0."""
    args = parse_args(argv)
    names = selected(args.aggregators)
    aggregators = {n: build_aggregator(n) for n in names}  # fail fast on unknown names
    pareto, optimum = pareto_set(), average_optimum()
    trajs: dict[str, Tensor] = {}
    rows: list[Outcome] = []
    t0 = time.perf_counter()
    for name, agg in aggregators.items():
        t = time.perf_counter()
        trajs[name] = optimize(name, STARTS, args.steps, args.lr, args.beta2)
        done = outcomes(name, trajs[name], pareto, optimum)
        rows += done
        avgs = ", ".join(f"{r.average:.2f}" for r in done)
        print(f"[toy] {name:<8} {agg!r}: {time.perf_counter() - t:.1f}s, final avg loss {avgs}")
    path = args.out / "toy.png"
    plot(trajs, pareto, optimum, path)
    f_opt = toy_losses(optimum).mean().item()
    print(
        f"\noptimum of the average loss: x* = ({optimum[0]:.3f}, {optimum[1]:.4f}), "
        f"avg = {f_opt:.3f}; pareto = within 0.1 of the Pareto set"
    )
    print(format_table(rows))
    print(f"\nwrote {path} ({time.perf_counter() - t0:.1f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
