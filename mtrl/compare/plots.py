"""PNG figures of a comparison, drawn with matplotlib's object API (Agg, no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from mtrl.compare.results import NETWORKS, Comparison

DPI = 100


MANY = 8
"""Above this many methods the legend moves outside the axes and the CI bands fade."""
LINESTYLES = ("-", "--", ":", "-.")


def _colors(comparison: Comparison) -> dict[str, tuple[object, str]]:
    """One (colour, line style) per method, the same in every figure: matplotlib's ten default
    colours, then tab20's twenty with a line style per round, so 20+ methods stay apart."""
    labels = [m.label for m in comparison.methods]
    if len(labels) <= 10:
        return {label: (f"C{i}", "-") for i, label in enumerate(labels)}
    from matplotlib import colormaps

    palette = colormaps["tab20"].colors
    return {
        label: (palette[i % 20], LINESTYLES[(i // 20 + i % 2) % len(LINESTYLES)])
        for i, label in enumerate(labels)
    }


def _legend(fig: Figure, ax: object, count: int) -> None:
    if count > MANY:
        fig.set_figwidth(fig.get_figwidth() + 2.2)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    else:
        ax.legend(fontsize=8, loc="lower right")


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    return path


def success_curve(comparison: Comparison, path: Path) -> Path:
    """Mean eval success over env steps per method, with a 95% bootstrap band over seeds."""
    fig = Figure(figsize=(6.4, 4.0))
    ax = fig.add_subplot()
    styles = _colors(comparison)
    band = 0.08 if len(comparison.methods) > MANY else 0.2
    for m in comparison.methods:
        if m.curve is None:
            continue
        c, (color, style) = m.curve, styles[m.label]
        ax.plot(c.steps, c.mean, style, marker="o", ms=3, color=color, label=f"{m.label} (n={m.n})")
        if m.n > 1 and c.low is not None and c.high is not None:
            ax.fill_between(c.steps, c.low, c.high, color=color, alpha=band, lw=0)
    ax.set_xlabel("env steps per task")
    ax.set_ylabel("eval success (mean over tasks)")
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{comparison.suite}: mean over seeds, 95% bootstrap CI", fontsize=10)
    ax.grid(alpha=0.3)
    _legend(fig, ax, len(comparison.methods))
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
    styles = _colors(comparison)
    for k, net in enumerate(NETWORKS):
        ax = fig.add_subplot(1, len(NETWORKS), k + 1)
        drawn = False
        for m in comparison.methods:
            if net in m.conflict:
                c = m.conflict[net]
                color, style = styles[m.label]
                ax.plot(c.steps, c.mean, style, color=color, label=m.label)
                drawn = True
        if drawn and k == len(NETWORKS) - 1:
            _legend(fig, ax, len(comparison.methods))
        elif drawn and len(comparison.methods) <= MANY:
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
