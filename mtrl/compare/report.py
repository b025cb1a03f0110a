"""The comparison as text: a console table, ``comparison.md``, ``comparison.json`` and ``.csv``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from mtrl.compare.results import Comparison, MethodResult

SUMMARY_HEADER = [
    "method",
    "runs",
    "success mean [95% CI]",
    "IQM [95% CI]",
    "ms per env step",
    "time",
]


def _ci(value: float, ci: tuple[float, float]) -> str:
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def _time_cells(m: MethodResult, comparison: Comparison) -> list[str]:
    ms = "n/a" if m.seconds_per_env_step is None else f"{m.seconds_per_env_step * 1e3:.3f}"
    if m.time_vs_baseline is None:
        return [ms, "n/a"]
    return [ms, f"{m.time_vs_baseline:.2f}x {comparison.baseline}"]


def summary_rows(comparison: Comparison) -> list[list[str]]:
    """One row per method under ``SUMMARY_HEADER``."""
    return [
        [
            m.label,
            str(m.n),
            _ci(m.success_mean, m.success_ci),
            _ci(m.iqm, m.iqm_ci),
            *_time_cells(m, comparison),
        ]
        for m in comparison.methods
    ]


def task_rows(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Header and rows of final success per task (rows) and method (columns)."""
    header = ["task", *(m.label for m in comparison.methods)]
    rows = [
        [task, *(f"{m.task_success[task]:.2f}" for m in comparison.methods)]
        for task in comparison.tasks
    ]
    return header, rows


def headline(comparison: Comparison) -> str:
    """One sentence saying what was compared, at which step, and how the CIs were made."""
    runs = sum(m.n for m in comparison.methods)
    episodes = (
        f", {comparison.eval_episodes} deterministic episodes per task"
        if comparison.eval_episodes
        else ""
    )
    return (
        f"{comparison.suite}: {runs} runs grouped by {comparison.by}, success at "
        f"{comparison.step} env steps per task{episodes}; 95% CIs from "
        f"{comparison.reps} stratified bootstrap resamples of runs (seed {comparison.seed})"
    )


def _aligned(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _markdown_table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def console_text(comparison: Comparison) -> str:
    """The summary table and the per-task table, aligned for a terminal."""
    header, rows = task_rows(comparison)
    no_base = "" if comparison.baseline else "\n(time relative to mean: n/a, no group of mean runs)"
    return (
        f"{headline(comparison)}\n\n{_aligned(SUMMARY_HEADER, summary_rows(comparison))}"
        f"{no_base}\n\nsuccess per task at step {comparison.step} (mean over runs)\n{_aligned(header, rows)}"
    )


def markdown(comparison: Comparison, images: dict[str, Path]) -> str:
    """``comparison.md``: the tables, the figures (relative links) and the runs behind them."""
    header, rows = task_rows(comparison)
    parts = [f"# Comparison on {comparison.suite}", "", headline(comparison) + "."]
    if comparison.warnings:
        parts += ["", "Warnings:", "", *(f"- {w}" for w in comparison.warnings)]
    time_note = (
        f"Time: wall-clock per env step (summed over tasks; from summary.json, or the latest "
        f"`perf/env_steps_per_s` of a running run), relative to `{comparison.baseline}`."
        if comparison.baseline
        else "Time relative to `mean`: n/a (no group of `surgery=mean` runs)."
    )
    parts += [
        "",
        "## Final success",
        "",
        _markdown_table(SUMMARY_HEADER, summary_rows(comparison)),
        "",
        "IQM: interquartile mean over all runs x tasks (rliable). " + time_note,
    ]
    if "success_curve" in images:
        parts += ["", "## Success during training", "", f"![success curve]({images['success_curve'].name})"]  # fmt: skip
    parts += ["", "## Final success per task", "", _markdown_table(header, rows)]
    if "task_success" in images:
        parts += ["", f"![task success]({images['task_success'].name})"]
    if "conflict" in images:
        parts += [
            "",
            "## Gradient conflict",
            "",
            "Fraction of task pairs whose per-task gradients point apart (cosine < 0), "
            "`surgery/<net>/conflict_fraction`, mean over runs.",
            "",
            f"![gradient conflict]({images['conflict'].name})",
        ]
    parts += ["", "## Runs", ""]
    for m in comparison.methods:
        parts.append(f"- **{m.label}**: " + ", ".join(f"`{r}`" for r in m.runs))
    return "\n".join(parts) + "\n"


def to_json(comparison: Comparison) -> dict[str, Any]:
    """The numbers of the comparison as plain data."""
    methods = {}
    for m in comparison.methods:
        methods[m.label] = {
            "runs": m.runs,
            "seeds": m.seeds,
            "n": m.n,
            "success_mean": m.success_mean,
            "success_mean_ci": list(m.success_ci),
            "success_std": m.success_std,
            "iqm": m.iqm,
            "iqm_ci": list(m.iqm_ci),
            "task_success": m.task_success,
            "run_success": dict(zip(m.runs, m.scores.mean(axis=1).tolist(), strict=True)),
            "seconds_per_env_step": m.seconds_per_env_step,
            "time_vs_baseline": m.time_vs_baseline,
            "curve": None if m.curve is None else vars(m.curve),
            "conflict": {net: {"steps": c.steps, "mean": c.mean} for net, c in m.conflict.items()},
        }
    return {
        "suite": comparison.suite,
        "by": comparison.by,
        "step": comparison.step,
        "tasks": comparison.tasks,
        "eval_episodes": comparison.eval_episodes,
        "bootstrap": {"reps": comparison.reps, "seed": comparison.seed, "ci": 0.95},
        "baseline": comparison.baseline,
        "warnings": comparison.warnings,
        "methods": methods,
    }


def csv_rows(comparison: Comparison) -> list[dict[str, Any]]:
    """One flat row per method: the summary numbers, then ``success/<task>`` columns."""
    rows = []
    for m in comparison.methods:
        row: dict[str, Any] = {
            "method": m.label,
            "runs": m.n,
            "step": comparison.step,
            "success_mean": m.success_mean,
            "success_ci_low": m.success_ci[0],
            "success_ci_high": m.success_ci[1],
            "iqm": m.iqm,
            "iqm_ci_low": m.iqm_ci[0],
            "iqm_ci_high": m.iqm_ci[1],
            "seconds_per_env_step": m.seconds_per_env_step,
            "time_vs_baseline": m.time_vs_baseline,
        }
        row.update({f"success/{t}": m.task_success[t] for t in comparison.tasks})
        rows.append(row)
    return rows


def write_reports(comparison: Comparison, out: Path, images: dict[str, Path]) -> dict[str, Path]:
    """Write ``comparison.md``, ``comparison.json`` and ``comparison.csv`` into ``out``."""
    paths = {
        "markdown": out / "comparison.md",
        "json": out / "comparison.json",
        "csv": out / "comparison.csv",
    }
    paths["markdown"].write_text(markdown(comparison, images))
    paths["json"].write_text(json.dumps(to_json(comparison), indent=2))
    rows = csv_rows(comparison)
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return paths
