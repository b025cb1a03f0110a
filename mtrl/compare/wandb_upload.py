"""Upload a comparison (table and figures) to one W&B run of job type ``compare``.

Online only with a login (``WANDB_API_KEY`` or ``wandb login``); otherwise, or when the online
start fails or takes longer than ``timeout``, the run is written offline under ``<out>/wandb`` for
a later ``wandb sync`` (the warning line gives the command). It never needs the network and never
fails the command.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path

from mtrl.compare.report import csv_rows
from mtrl.compare.results import Comparison
from mtrl.logging.wandb_sink import start_run


def _warn(message: str) -> None:
    print(f"mtrl compare: warning: {message}", file=sys.stderr)


def upload(
    comparison: Comparison,
    images: dict[str, Path],
    out: Path,
    mode: str = "online",
    timeout: float = 30.0,
) -> Path:
    """Log the table (``wandb.Table``) and figures (``wandb.Image``); returns the W&B run dir.

    :param mode: ``online`` (offline without a login or when the start fails) or ``offline``.
    :param out: the comparison folder; W&B files go to ``out/wandb``.
    :param timeout: seconds an online start may take before writing offline instead.
    """
    import wandb

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    kwargs = {
        "dir": str(out),
        "project": comparison.project,
        "entity": comparison.entity,
        "job_type": "compare",
        "name": f"compare__{comparison.suite}__{stamp}",
        "tags": ["compare", comparison.suite],
        "config": {
            "suite": comparison.suite,
            "by": comparison.by,
            "step": comparison.step,
            "bootstrap_reps": comparison.reps,
            "runs": {m.label: m.runs for m in comparison.methods},
        },
    }
    run = start_run(mode, kwargs, timeout, warn=lambda message: _warn(f"W&B: {message}"))
    rows = csv_rows(comparison)
    columns = list(rows[0])
    table = wandb.Table(columns=columns, data=[[row[c] for c in columns] for row in rows])
    run.log({"comparison": table, **{name: wandb.Image(str(p)) for name, p in images.items()}})
    for m in comparison.methods:
        run.summary[f"{m.label}/success_mean"] = m.success_mean
        run.summary[f"{m.label}/iqm"] = m.iqm
    run_dir = Path(run.dir).parent
    run.finish()
    return run_dir
