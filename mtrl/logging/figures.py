"""Figures rendered off-screen (matplotlib Agg) into RGB arrays for the sinks that take images."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

ANNOTATE_UP_TO = 12
"""Print each cell's value when there are at most this many tasks."""


def cosine_heatmap(cosine: np.ndarray, task_names: Sequence[str], title: str = "") -> np.ndarray:
    """The T x T cosine similarities of task gradients as an RGB image [H, W, 3] uint8.

    Red is conflict (cosine < 0), blue agreement; task names label both axes.

    :param cosine: [T, T] values in [-1, 1].
    :param task_names: T names, in the order of the matrix rows.
    :param title: drawn above the matrix.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cosine = np.asarray(cosine, dtype=np.float64)
    tasks = cosine.shape[0]
    side = min(4.0 + 0.3 * tasks, 16.0)
    fig = Figure(figsize=(side + 1.0, side), dpi=80, layout="constrained")
    canvas = FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    im = ax.imshow(cosine, cmap="RdBu", vmin=-1.0, vmax=1.0)
    fig.colorbar(im, ax=ax, shrink=0.8, label="cosine")
    ticks = np.arange(tasks)
    cell_pt = 0.75 * side * 72 / tasks  # roughly the matrix's share of the figure
    small = min(9.0, max(4.0, 0.45 * cell_pt))
    ax.set_xticks(ticks, list(task_names), rotation=90, fontsize=small)
    ax.set_yticks(ticks, list(task_names), fontsize=small)
    if tasks <= ANNOTATE_UP_TO:
        for i in range(tasks):
            for j in range(tasks):
                value = cosine[i, j]
                color = "white" if abs(value) > 0.6 else "black"
                ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    if title:
        ax.set_title(title)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()
