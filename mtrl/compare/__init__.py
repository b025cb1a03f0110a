"""Compare runs of several methods over seeds: ``mtrl compare RUN_DIR ...``.

- ``runs``: find run directories and read them (config, metrics, summary).
- ``stats``: IQM, mean and stratified bootstrap CIs (rliable's definitions), pure functions.
- ``results``: align runs at one step and aggregate each group into a ``MethodResult``.
- ``plots``, ``report``: PNG figures; console table, Markdown, JSON and CSV.
- ``wandb_upload``: the table and figures to a W&B run (offline without a login).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mtrl.compare.results import Comparison, MethodResult, build_comparison
from mtrl.compare.runs import Run, expand_paths, load_run


@dataclass
class CompareOutputs:
    """What ``compare`` wrote: the comparison itself and the files."""

    comparison: Comparison
    files: dict[str, Path]
    wandb_dir: Path | None = None
    images: dict[str, Path] = field(default_factory=dict)


def compare(
    patterns: list[str],
    out: str | Path,
    by: str = "aggregator",
    reps: int = 2000,
    seed: int = 0,
    wandb: str | None = None,
    step: int | None = None,
) -> CompareOutputs:
    """Load the runs named by ``patterns``, aggregate them by ``by`` and write the report to ``out``.

    :param patterns: run directories or glob patterns.
    :param out: folder for comparison.md/.json/.csv and the PNG figures (created).
    :param by: ``aggregator``, ``experiment`` or any dotted config key.
    :param reps: bootstrap resamples for the 95% CIs.
    :param seed: seed of the bootstrap.
    :param wandb: ``online`` or ``offline`` to upload to W&B; None to skip.
    :param step: compare at this env step (default: the smallest final step of the runs).
    """
    from mtrl.compare import plots, report

    runs = [load_run(p) for p in expand_paths(patterns)]
    comparison = build_comparison(runs, by=by, reps=reps, seed=seed, step=step)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    images = plots.draw_all(comparison, out)
    files = {**report.write_reports(comparison, out, images), **images}
    wandb_dir = None
    if wandb:
        from mtrl.compare.wandb_upload import upload

        wandb_dir = upload(comparison, images, out, mode=wandb)
    return CompareOutputs(comparison, files, wandb_dir, images)


__all__ = ["CompareOutputs", "Comparison", "MethodResult", "Run", "compare", "load_run"]
