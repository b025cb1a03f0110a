"""Turn loaded runs into the numbers of a comparison: one ``MethodResult`` per group of runs.

All runs are compared at one env step: the smallest final step among them (a shorter run, or one
still going, cuts the others), and every mismatch is reported as a warning line, never mixed in
silently.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from mtrl.compare import stats
from mtrl.compare.runs import (
    SUCCESS,
    TASK_SUCCESS,
    Run,
    baseline_label,
    check_same_suite,
    group_runs,
)
from mtrl.errors import MtrlError

NETWORKS = ("critic", "actor")


@dataclass
class Curve:
    """A metric over env steps: mean over runs, with a 95% band where one was computed."""

    steps: list[int]
    mean: list[float]
    low: list[float] | None = None
    high: list[float] | None = None


@dataclass
class MethodResult:
    """One method (group of runs, usually one per seed) at the comparison step."""

    label: str
    runs: list[str]
    seeds: list[int]
    scores: NDArray[np.float64]
    """Final success ``[runs, tasks]``."""
    success_mean: float
    success_ci: tuple[float, float]
    success_std: float
    """Standard deviation over runs of each run's mean success (0 for one run)."""
    iqm: float
    iqm_ci: tuple[float, float]
    task_success: dict[str, float]
    """Mean over runs of each task's final success."""
    seconds_per_env_step: float | None
    time_vs_baseline: float | None = None
    curve: Curve | None = None
    conflict: dict[str, Curve] = field(default_factory=dict)
    """``surgery/<net>/conflict_fraction`` per network, mean over runs."""

    @property
    def n(self) -> int:
        return len(self.runs)


@dataclass
class Comparison:
    """Everything the report, the plots and the W&B upload show."""

    suite: str
    by: str
    step: int
    tasks: list[str]
    reps: int
    seed: int
    baseline: str | None
    methods: list[MethodResult]
    warnings: list[str]
    eval_episodes: int | None
    project: str
    entity: str | None


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


def usable_runs(runs: list[Run], warnings: list[str]) -> list[Run]:
    """The runs with at least one evaluation; the others are skipped with a warning line."""
    empty = [r for r in runs if not r.evals]
    for run in empty:
        warnings.append(f"skipping {run.path}: no evaluation yet (still warming up?)")
    kept = [r for r in runs if r.evals]
    if not kept:
        raise MtrlError(f"none of the {_plural(len(runs), 'run')} has an evaluation yet")
    return kept


def common_step(runs: list[Run], warnings: list[str], at: int | None = None) -> int:
    """The smallest final eval step among the runs, or ``at`` if given (every run must have
    reached it); runs cut short are listed in a warning when the step was not asked for."""
    final = min(r.last_step for r in runs)
    if at is not None:
        short = [f"{r.name} ({r.last_step} steps)" for r in runs if r.last_step < at]
        if at < 1 or short:
            more = f" and {len(short) - 3} more" if len(short) > 3 else ""
            raise MtrlError(
                f"--step {at}: not reached by every run (the smallest final step is {final}): "
                + ", ".join(short[:3])
                + more
            )
    step = final if at is None else at
    cut = [r for r in runs if r.last_step != step] if at is None else []
    if cut:
        listed = ", ".join(
            f"{r.name} ({r.last_step} steps{'' if r.finished else ', still running'})" for r in cut
        )
        warnings.append(
            f"runs differ in length: comparing all at step {step} (the smallest final step), "
            f"so these are cut: {listed}"
        )
    running = [r for r in runs if not r.finished and r.last_step == step]
    if running:
        names = ", ".join(r.name for r in running)
        warnings.append(
            f"{_plural(len(running), 'run')} still running (no summary.json), compared at "
            f"their latest evaluation: {names}"
        )
    off = [r for r in runs if _eval_step(r, step) != step]
    if off:
        listed = ", ".join(f"{r.name} (step {_eval_step(r, step)})" for r in off)
        warnings.append(f"no evaluation at step {step}, using the one before: {listed}")
    return step


def _eval_step(run: Run, step: int) -> int:
    return int(run.eval_at(step)["step"])


def _mean_curve(runs: list[Run], key: str, until: int) -> tuple[list[int], NDArray] | None:
    """Steps logged by every run (up to ``until``) and the ``[runs, steps]`` values there."""
    series = [r.series(key, until) for r in runs]
    if not all(series):
        return None
    steps = sorted(set.intersection(*(set(s) for s in series)))
    if not steps:
        return None
    return steps, np.array([[s[t] for t in steps] for s in series])


def method_result(
    label: str, runs: list[Run], step: int, tasks: list[str], reps: int, seed: int
) -> MethodResult:
    """The numbers of one method at ``step``: scores, mean and IQM with CIs, curves, timing."""
    rows = [r.eval_at(step) for r in runs]
    scores = np.array([[float(row[TASK_SUCCESS + t]) for t in tasks] for row in rows])
    times = [t for t in (r.seconds_per_env_step() for r in runs) if t is not None]
    result = MethodResult(
        label=label,
        runs=[r.name for r in runs],
        seeds=[r.seed for r in runs],
        scores=scores,
        success_mean=float(stats.mean(scores)),
        success_ci=stats.bootstrap_ci(scores, stats.mean, reps, seed),
        success_std=float(scores.mean(axis=1).std(ddof=1)) if len(runs) > 1 else 0.0,
        iqm=float(stats.iqm(scores)),
        iqm_ci=stats.bootstrap_ci(scores, stats.iqm, reps, seed),
        task_success=dict(zip(tasks, scores.mean(axis=0).tolist(), strict=True)),
        seconds_per_env_step=float(np.mean(times)) if times else None,
    )
    curve = _mean_curve(runs, SUCCESS, step)
    if curve is not None:
        steps, values = curve
        mean, low, high = stats.bootstrap_curve(values, reps, seed)
        result.curve = Curve(steps, mean.tolist(), low.tolist(), high.tolist())
    for net in NETWORKS:
        conflict = _mean_curve(runs, f"surgery/{net}/conflict_fraction", step)
        if conflict is not None:
            steps, values = conflict
            result.conflict[net] = Curve(steps, values.mean(axis=0).tolist())
    return result


def _order(groups: dict[str, list[Run]], baseline: str | None) -> list[str]:
    """The baseline first, then the other groups in sorted order."""
    rest = sorted(label for label in groups if label != baseline)
    return [baseline, *rest] if baseline else rest


def build_comparison(
    runs: list[Run],
    by: str = "aggregator",
    reps: int = 2000,
    seed: int = 0,
    step: int | None = None,
) -> Comparison:
    """Check, align and aggregate runs into a ``Comparison`` (warnings collected in it); compare
    at env step ``step`` (default: the smallest final step)."""
    if reps < 1:
        raise MtrlError(f"--reps must be >= 1, got {reps}")
    warnings: list[str] = []
    runs = usable_runs(runs, warnings)
    check_same_suite(runs)
    step = common_step(runs, warnings, at=step)
    groups = group_runs(runs, by)
    for label, members in groups.items():
        seeds = Counter(r.seed for r in members)
        repeated = [s for s, n in seeds.items() if n > 1]
        if repeated:
            warnings.append(
                f"{label}: several runs share seed {', '.join(map(str, repeated))}; "
                "each counts as a separate run"
            )
    episodes = Counter(int(r.config["eval"]["episodes"]) for r in runs)
    if len(episodes) > 1:
        listed = ", ".join(f"{e} ({_plural(n, 'run')})" for e, n in sorted(episodes.items()))
        warnings.append(f"runs evaluate with different episodes per task: {listed}")
    projects = Counter(str(r.config["logger"]["project"]) for r in runs)
    entities = Counter(r.config["logger"].get("entity") for r in runs)
    baseline = baseline_label(groups)
    tasks = runs[0].tasks
    methods = [
        method_result(label, groups[label], step, tasks, reps, seed)
        for label in _order(groups, baseline)
    ]
    if baseline is not None:
        base = methods[0].seconds_per_env_step
        for m in methods:
            if base and m.seconds_per_env_step is not None:
                m.time_vs_baseline = m.seconds_per_env_step / base
    return Comparison(
        suite=runs[0].suite,
        by=by,
        step=step,
        tasks=tasks,
        reps=reps,
        seed=seed,
        baseline=baseline,
        methods=methods,
        warnings=warnings,
        eval_episodes=next(iter(episodes)) if len(episodes) == 1 else None,
        project=projects.most_common(1)[0][0],
        entity=entities.most_common(1)[0][0],
    )
