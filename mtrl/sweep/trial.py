"""One sweep trial inside a Ray worker: an ordinary mtrl run in its own directory.

A retried trial (its process died: OOM, a killed worker, a lost node) finds its own checkpoint
and resumes from it; a trial that never wrote one starts over in a clean directory. A user
error inside the run (``MtrlError``, e.g. a diverged update) ends the trial once, reported as
failed, and is not retried: running it again would fail the same way.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from mtrl.errors import MtrlError
from mtrl.logging.logger import Sink
from mtrl.rundir import CHECKPOINT

LOG = "trial.log"
"""The trial's console output, in its run directory."""
ERROR = "error.txt"
"""Why a trial failed, in its run directory (read by the sweep's table and summary)."""


class TuneReportSink(Sink):
    """Sends the step and the latest evaluation success of each logged row to Ray Tune."""

    def __init__(self) -> None:
        self.success: float | None = None

    def write(self, step: int, metrics: dict[str, float]) -> None:
        from ray import tune

        if "eval/success_mean" in metrics:
            self.success = float(metrics["eval/success_mean"])
        report: dict[str, Any] = {"step": step}
        if self.success is not None:
            report["success"] = self.success
        tune.report(report)

    def close(self) -> None:
        pass


def run_trial(config: dict[str, Any]) -> None:
    """Ray Tune's function trainable: ``config`` holds ``experiment``, ``overrides`` and
    ``run_dir`` (see ``mtrl.sweep.runner``)."""
    from ray import tune

    from mtrl.config import resolve_config
    from mtrl.runners import make_runner

    run_dir = Path(config["run_dir"])
    resume = (run_dir / CHECKPOINT).is_file()
    if not resume and run_dir.exists():  # died before its first checkpoint: nothing to keep
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / ERROR).unlink(missing_ok=True)
    with (
        open(run_dir / LOG, "a", buffering=1) as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        print(f"[trial pid {os.getpid()}] {'resuming' if resume else 'starting'}", flush=True)
        try:
            cfg = resolve_config(config["experiment"], list(config["overrides"]))
            runner = make_runner(cfg, run_dir=run_dir, resume=resume, sinks=[TuneReportSink()])
            summary = runner.run()
        except MtrlError as exc:
            print(f"mtrl: error: {exc}", file=sys.stderr)
            (run_dir / ERROR).write_text(f"{exc}\n")
            tune.report({"failed": str(exc)})
            return
    tune.report({"step": summary["steps"], "success": summary["success_mean"], "done_run": 1})
