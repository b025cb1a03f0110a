"""Aggregate scores over runs and tasks, with bootstrap confidence intervals (rliable's definitions).

Scores are a ``[runs, tasks]`` matrix (one row per seed, e.g. final success per task); every
statistic also takes a batch ``[..., runs, tasks]`` of resampled matrices and reduces the last two
axes, so a bootstrap evaluates all its replicates in one vectorised call.

- ``iqm``: rliable's ``aggregate_iqm``, i.e. ``scipy.stats.trim_mean(scores, 0.25, axis=None)``:
  the ``int(0.25 n)`` lowest and highest of the ``n = runs x tasks`` scores are dropped (no
  fractional weighting of the boundary scores) and the rest averaged.
- ``stratified_bootstrap``: rliable's ``StratifiedBootstrap`` (``task_bootstrap=False``): each
  replicate draws ``runs`` run indices with replacement independently for every task.
- ``percentile_ci``: arch's ``conf_int(method="percentile")`` as rliable calls it:
  ``np.percentile`` (linear interpolation) at 2.5 and 97.5 for a 95% interval.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

Statistic = Callable[[NDArray[np.float64]], NDArray[np.float64]]

#: Largest number of resampled scores held in memory at once by the bootstraps.
CHUNK_ELEMENTS = 2_000_000


def trimmed_mean(values: ArrayLike, proportion: float) -> NDArray[np.float64]:
    """``scipy.stats.trim_mean`` along the last axis: cut ``int(proportion * n)`` from each end."""
    x = np.sort(np.asarray(values, dtype=np.float64), axis=-1)
    n = x.shape[-1]
    cut = int(proportion * n)
    if n == 0 or cut >= n - cut:
        raise ValueError(f"cannot trim {proportion:.0%} from each end of {n} values")
    return x[..., cut : n - cut].mean(axis=-1)


def iqm(scores: ArrayLike) -> NDArray[np.float64]:
    """Interquartile mean over all runs and tasks of ``[..., runs, tasks]`` (rliable's IQM)."""
    x = np.asarray(scores, dtype=np.float64)
    return trimmed_mean(x.reshape(*x.shape[:-2], -1), 0.25)


def mean(scores: ArrayLike) -> NDArray[np.float64]:
    """Mean over all runs and tasks of ``[..., runs, tasks]`` (rliable's ``aggregate_mean``)."""
    return np.asarray(scores, dtype=np.float64).mean(axis=(-2, -1))


def stratified_bootstrap(
    scores: ArrayLike, reps: int, rng: np.random.Generator
) -> NDArray[np.float64]:
    """``reps`` resampled score matrices ``[reps, runs, tasks]``: runs drawn per task independently."""
    x = np.asarray(scores, dtype=np.float64)
    runs, tasks = x.shape
    rows = rng.integers(0, runs, size=(reps, runs, tasks))
    return x[rows, np.arange(tasks)]


def percentile_ci(values: ArrayLike, size: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap replicates: the (1 - size)/2 and (1 + size)/2 quantiles."""
    tail = 100.0 * (1.0 - size) / 2.0
    low, high = np.percentile(np.asarray(values, dtype=np.float64), [tail, 100.0 - tail])
    return float(low), float(high)


def bootstrap_ci(
    scores: ArrayLike,
    statistic: Statistic,
    reps: int = 2000,
    seed: int = 0,
    size: float = 0.95,
) -> tuple[float, float]:
    """Percentile confidence interval of ``statistic`` under the stratified bootstrap.

    :param scores: ``[runs, tasks]``.
    :param statistic: reduces ``[reps, runs, tasks]`` to ``[reps]`` (``iqm``, ``mean``).
    :param reps: bootstrap replicates.
    :param seed: seed of the resampling; the same inputs and seed give the same interval.
    :param size: coverage of the interval.
    """
    x = np.asarray(scores, dtype=np.float64)
    if x.ndim != 2 or 0 in x.shape:
        raise ValueError(f"scores must be a non-empty [runs, tasks] matrix, got shape {x.shape}")
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_ELEMENTS // x.size)
    values = np.concatenate(
        [
            statistic(stratified_bootstrap(x, min(chunk, reps - start), rng))
            for start in range(0, reps, chunk)
        ]
    )
    return percentile_ci(values, size)


def bootstrap_curve(
    curves: ArrayLike, reps: int = 2000, seed: int = 0, size: float = 0.95
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Mean over runs of ``[runs, steps]`` curves and its percentile CI per step.

    Whole curves are resampled (runs drawn with replacement), so a band is the uncertainty of the
    mean over seeds at each step. Returns (mean, low, high), each ``[steps]``.
    """
    x = np.asarray(curves, dtype=np.float64)
    runs = x.shape[0]
    rng = np.random.default_rng(seed)
    chunk = max(1, CHUNK_ELEMENTS // max(x.size, 1))
    means = np.concatenate(
        [
            x[rng.integers(0, runs, size=(min(chunk, reps - start), runs))].mean(axis=1)
            for start in range(0, reps, chunk)
        ]
    )
    tail = 100.0 * (1.0 - size) / 2.0
    low, high = np.percentile(means, [tail, 100.0 - tail], axis=0)
    return x.mean(axis=0), low, high
