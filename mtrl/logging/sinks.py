"""Sinks: a JSON-lines metrics file in the run directory."""

from __future__ import annotations

import json
import math
from pathlib import Path


class JsonlSink:
    """One JSON object per dumped row: ``{"step": ..., key: value, ...}`` in ``metrics.jsonl``.

    :param path: the file; rows are appended and flushed at every write.
    :param keep_until: on resume, rows with a step above this are dropped first (they were
        logged after the checkpoint the run resumes from, and will be logged again).
    """

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
