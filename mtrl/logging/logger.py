"""The logger: the trainer records values, sinks decide how to write them.

Values are accumulated between dumps without a host-device sync (tensors stay on their device
and are summed); ``dump`` turns the means into floats once per log point and hands one row to
every sink. A sink that fails is reported once and skipped, except the required metrics file.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
from torch import Tensor
from tqdm import tqdm

from mtrl.errors import MtrlError


class Sink(Protocol):
    """Where logged values go (a file, the console, W&B, TensorBoard).

    ``write`` and ``close`` are required. Subclass ``Sink`` to inherit no-op defaults for what
    only some sinks take: images (set ``accepts_images = True`` to receive them) and run info.
    """

    required: ClassVar[bool] = False
    """A required sink that fails stops the run with an error (the metrics file: resume and
    ``mtrl compare`` read it); any other failing sink is reported once and skipped."""

    accepts_images: ClassVar[bool] = False
    """Whether ``write_images`` does something: images are only rendered if some sink takes them."""

    def write(self, step: int, metrics: dict[str, float]) -> None:
        """One row of scalars logged at ``step`` (env steps per task)."""
        ...

    def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """RGB images [H, W, 3] uint8 by key, logged at ``step``; ignored by default."""

    def write_info(self, name: str, info: dict[str, Any]) -> None:
        """Facts about the run written once (e.g. ``system``: versions, device); ignored by default."""

    def close(self) -> None:
        """Flush and release; called once at the end of the run."""
        ...


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
        self._failed: set[int] = set()  # ids of sinks that raised

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
            if isinstance(mean, Tensor) and mean.ndim >= 1:
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

    def state_dict(self) -> dict[str, Any]:
        """The running sums and counts since the last row: a checkpoint taken between two rows
        keeps them, so the first row after a resume averages the same updates."""
        return {"sums": dict(self._sums), "counts": dict(self._counts)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""
        self._sums, self._counts = dict(state["sums"]), dict(state["counts"])

    def dump(self, step: int, extra: dict[str, float] | None = None) -> dict[str, float]:
        """Write the means (plus ``extra`` values as they are) to every sink and reset."""
        row = self.means()
        if extra:
            row.update(extra)
        self._each("write", lambda sink: sink.write(step, row))
        self._sums.clear()
        self._counts.clear()
        return row

    @property
    def accepts_images(self) -> bool:
        """True if some sink takes images (render them only then)."""
        return any(sink.accepts_images for sink in self.sinks)

    def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        """Hand RGB images [H, W, 3] uint8 to the sinks that take them."""
        if images:
            self._each("write_images", lambda sink: sink.write_images(step, images))

    def write_info(self, name: str, info: dict[str, Any]) -> None:
        """Hand run facts written once (e.g. ``system``) to every sink."""
        self._each("write_info", lambda sink: sink.write_info(name, info))

    def close(self) -> None:
        """Close every sink."""
        self._each("close", lambda sink: sink.close())

    def _each(self, what: str, call: Callable[[Sink], None]) -> None:
        """``call`` every sink; a sink that raises is reported once (not each time) and skipped."""
        for sink in self.sinks:
            try:
                call(sink)
            except Exception as exc:
                if sink.required:
                    raise MtrlError(
                        f"{type(sink).__name__}.{what} failed ({type(exc).__name__}: "
                        f"{_first_line(exc)}); the last checkpoint is intact"
                    ) from exc
                if id(sink) not in self._failed:
                    self._failed.add(id(sink))
                    tqdm.write(
                        f"warning: {type(sink).__name__}.{what} failed "
                        f"({type(exc).__name__}: {_first_line(exc)}); training continues",
                        file=sys.stderr,
                    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"
