"""Sinks: the JSON-lines metrics file in the run directory, and one-line console summaries."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from mtrl.logging.logger import Sink


class JsonlSink(Sink):
    """One JSON object per dumped row: ``{"step": ..., key: value, ...}`` in ``metrics.jsonl``.

    :param path: the file; rows are appended and flushed at every write.
    :param keep_until: on resume, rows with a step above this are dropped first (they were
        logged after the checkpoint the run resumes from, and will be logged again).
    """

    required = True

    def __init__(self, path: str | Path, keep_until: int | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if keep_until is not None and self.path.exists():
            kept = [r for r in read_metrics(self.path) if r.get("step", 0) <= keep_until]
            tmp = self.path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in kept))
            tmp.replace(self.path)
        self._file = self.path.open("a")

    def write(self, step: int, metrics: dict[str, float]) -> None:
        row = {"step": step, **{k: (None if _bad(v) else v) for k, v in metrics.items()}}
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class ConsoleSink(Sink):
    """One line per evaluation, e.g. ``step 2000  success 0.75  return -12.3  env-steps/s 1640``.

    Printed with ``tqdm.write`` so that a progress bar on the console stays intact; rows without
    an evaluation print nothing.

    :param file: where the lines go (standard output by default).
    """

    def __init__(self, file: TextIO | None = None) -> None:
        self.file = file

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if "eval/success_mean" not in metrics:
            return
        line = f"step {step}  success {metrics['eval/success_mean']:.2f}"
        if "eval/return_mean" in metrics:
            line += f"  return {metrics['eval/return_mean']:.1f}"
        if "perf/env_steps_per_s" in metrics:
            line += f"  env-steps/s {metrics['perf/env_steps_per_s']:.0f}"
        tqdm.write(line, file=self.file or sys.stdout)

    def close(self) -> None:
        pass


def _bad(value: float) -> bool:
    return isinstance(value, float) and not math.isfinite(value)


def read_metrics(path: str | Path) -> list[dict]:
    """All rows of a metrics file (a partly written last line is skipped)."""
    rows = []
    for line in Path(path).read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows
