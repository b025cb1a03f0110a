"""Cumulative timing of a code section that may enqueue device work, without a sync per call."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from time import perf_counter

import torch

MAX_PENDING = 10_000
"""Unread CUDA event pairs kept before they are resolved anyway (bounds memory if nobody reads)."""


class SectionTimer:
    """Sums the time spent in ``with timer.section():`` blocks; ``take()`` returns and clears it.

    On CPU torch runs operations synchronously, so ``perf_counter`` around the block is exact and
    costs well under a microsecond. On CUDA the block only enqueues kernels: a pair of CUDA events
    is recorded around it instead, and their elapsed times are read in ``take()`` (called at log
    points, where the host waits for the device anyway), so the hot path never synchronises.

    :param device: where the timed work runs.
    """

    def __init__(self, device: str | torch.device = "cpu") -> None:
        self.cuda = torch.device(device).type == "cuda"
        self._seconds = 0.0
        self._pending: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []

    @contextmanager
    def section(self) -> Iterator[None]:
        """Time the block (exceptions propagate; their partial time is not counted)."""
        if self.cuda and torch.cuda.is_current_stream_capturing():
            yield  # inside a CUDA graph capture events cannot be timed: the graph's time counts
        elif self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._pending.append((start, end))
            if len(self._pending) >= MAX_PENDING:
                self._resolve()
        else:
            start_s = perf_counter()
            yield
            self._seconds += perf_counter() - start_s

    def _resolve(self) -> None:
        for start, end in self._pending:
            end.synchronize()
            self._seconds += start.elapsed_time(end) / 1000.0
        self._pending.clear()

    def take(self) -> float:
        """Seconds spent in sections since the last ``take`` (waits for pending CUDA work)."""
        self._resolve()
        seconds, self._seconds = self._seconds, 0.0
        return seconds
