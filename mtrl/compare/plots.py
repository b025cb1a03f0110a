"""PNG figures of a comparison, drawn with matplotlib's object API (Agg, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mtrl.compare.results import NETWORKS, Comparison

DPI = 100


def _colors(comparison: Comparison) -> dict[str, str]:
    """One colour per method, the same in every figure."""
    palette = [f"C{i}" for i in range(10)]
    return {m.label: palette[i % 10] for i, m in enumerate(comparison.methods)}


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def success_curve(comparison: Comparison, path: Path) -> Path:
    """Mean eval success over env steps per method, with a 95% bootstrap band over seeds."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    colors = _colors(comparison)
    for m in comparison.methods:
        if m.curve is None:
            continue
        c = m.curve
        ax.plot(
            c.steps, c.mean, marker="o", ms=3, color=colors[m.label], label=f"{m.label} (n={m.n})"
        )
        if m.n > 1 and c.low is not None and c.high is not None:
            ax.fill_between(c.steps, c.low, c.high, color=colors[m.label], alpha=0.2, lw=0)
    ax.set_xlabel("env steps per task")
    ax.set_ylabel("eval success (mean over tasks)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{comparison.suite}: mean over seeds, 95% bootstrap CI", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def task_success(comparison: Comparison, path: Path) -> Path:
    """Heatmap of final success, tasks x methods (mean over seeds)."""
    tasks, methods = comparison.tasks, comparison.methods
    values = np.array([[m.task_success[t] for m in methods] for t in tasks])
    fig = Figure(figsize=(2.2 + 0.9 * len(methods), 1.2 + 0.28 * len(tasks)))
    ax = fig.add_subplot()
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(methods)), [m.label for m in methods], rotation=30, ha="right")
    ax.set_yticks(range(len(tasks)), tasks, fontsize=7 if len(tasks) > 20 else 9)
    if values.size <= 600:
        for (i, j), v in np.ndenumerate(values):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                    color="black" if v > 0.6 else "white")  # fmt: skip
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03, label="final success")
    ax.set_title(f"step {comparison.step}", fontsize=10)
    return _save(fig, path)


def conflict(comparison: Comparison, path: Path) -> Path:
    """Fraction of task pairs with conflicting gradients (cosine < 0) over steps, per network."""
    fig = Figure(figsize=(9.0, 3.6))
    colors = _colors(comparison)
    for k, net in enumerate(NETWORKS):
        ax = fig.add_subplot(1, len(NETWORKS), k + 1)
        drawn = False
        for m in comparison.methods:
            if net in m.conflict:
                c = m.conflict[net]
                ax.plot(c.steps, c.mean, color=colors[m.label], label=m.label)
                drawn = True
        if drawn:
            ax.legend(fontsize=8)
        else:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_ylim(-0.03, 1.03)
        ax.set_xlabel("env steps per task")
        ax.set_ylabel("conflicting task pairs")
        ax.set_title(f"{net} gradients (mean over seeds)", fontsize=10)
        ax.grid(alpha=0.3)
    return _save(fig, path)


def draw_all(comparison: Comparison, out: Path) -> dict[str, Path]:
    """Every figure, written into ``out``; returns {name: path}."""
    return {
        "success_curve": success_curve(comparison, out / "success_curve.png"),
        "task_success": task_success(comparison, out / "task_success.png"),
        "conflict": conflict(comparison, out / "conflict.png"),
    }
