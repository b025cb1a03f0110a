"""The logger: the trainer records values, sinks decide how to write them.

Values are accumulated between dumps without a host-device sync (tensors stay on their device
and are summed); ``dump`` turns the means into floats once per log point and hands one row to
every sink.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from torch import Tensor


class Sink(Protocol):
    """Where a row of metrics goes (a file, the console, W&B)."""

    def write(self, step: int, metrics: dict[str, float]) -> None: ...

    def close(self) -> None: ...


class Logger:
    """Accumulates scalars and per-task vectors, and writes their means to sinks on ``dump``.

    :param sinks: the writers of each dumped row.
    :param task_names: names used to expand per-task vectors into ``<key>/<task>`` entries.
    """

    def __init__(self, sinks: Sequence[Sink], task_names: Sequence[str] = ()) -> None:
        self.sinks = list(sinks)
        self.task_names = list(task_names)
        self._sums: dict[str, Any] = {}
        self._counts: dict[str, int] = {}

    def record(self, key: str, value: float | Tensor) -> None:
        """Add a value to the running mean of ``key``; a [T] tensor is expanded per task on dump."""
        if isinstance(value, Tensor):
            value = value.detach()
        if key in self._sums:
            self._sums[key] = self._sums[key] + value
            self._counts[key] += 1
        else:
            self._sums[key] = value.clone() if isinstance(value, Tensor) else value
            self._counts[key] = 1

    def record_many(self, values: dict[str, float | Tensor], prefix: str = "") -> None:
        """``record`` every item, with ``prefix`` before each key."""
        for key, value in values.items():
            self.record(prefix + key, value)

    def means(self) -> dict[str, float]:
        """The current means as floats, per-task vectors expanded; does not clear."""
        row: dict[str, float] = {}
        for key, total in self._sums.items():
            mean = total / self._counts[key]
            if isinstance(mean, Tensor) and mean.numel() > 1:
                values = mean.float().cpu().tolist()
                names = (
                    self.task_names if len(self.task_names) == len(values) else range(len(values))
                )
                for name, v in zip(names, values, strict=True):
                    row[f"{key}/{name}"] = v
                row[f"{key}_mean"] = sum(values) / len(values)
            else:
                row[key] = float(mean)
        return row

    def dump(self, step: int, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Write the means (plus ``extra`` values as they are) to every sink and reset."""
        row = self.means()
        if extra:
            row.update(extra)
        for sink in self.sinks:
            sink.write(step, row)
        self._sums.clear()
        self._counts.clear()
        return row

    def close(self) -> None:
        """Close every sink."""
        for sink in self.sinks:
            sink.close()
