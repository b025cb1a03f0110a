"""A wall-clock limit on code running in the main thread, for envs stepped in-process.

``time_limit(seconds)`` arms the real-time interval timer (SIGALRM) around a block; when it
expires, :class:`Expired` is raised wherever the main thread is, e.g. inside an env's ``step``
that sleeps or loops in Python. Code stuck in C without returning to the interpreter is only
interrupted once it returns. Outside the main thread (where Python cannot handle signals) the
block runs without a limit. A timer armed by someone else (e.g. pytest-timeout) keeps its
deadline and handler: it is re-armed afterwards, and fires first if it is due first.
Must not import torch (rollout workers import this package).
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any


class Expired(BaseException):
    """The limit passed; a BaseException, so that an env's ``except Exception`` cannot eat it."""


def _usable(seconds: float) -> bool:
    return (
        seconds > 0
        and math.isfinite(seconds)
        and hasattr(signal, "setitimer")
        and threading.current_thread() is threading.main_thread()
    )


@contextlib.contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`Expired` in the block if it runs longer than ``seconds`` (main thread)."""
    if not _usable(seconds):
        yield
        return
    start = time.monotonic()
    deadline = start + seconds
    outer_handler: Any = signal.getsignal(signal.SIGALRM)
    outer: dict[str, float] = {}  # deadline and interval of a timer armed before ours
    active = True

    def expired(signum: int, frame: FrameType | None) -> None:
        if not active:
            return  # the block just ended
        now = time.monotonic()
        if "deadline" in outer and now >= outer["deadline"]:
            del outer["deadline"]  # the outer timer is due first: its handler's turn
            signal.setitimer(signal.ITIMER_REAL, max(deadline - now, 1e-6))
            if callable(outer_handler):
                outer_handler(signum, frame)
            return
        raise Expired

    signal.signal(signal.SIGALRM, expired)
    left, interval = signal.setitimer(signal.ITIMER_REAL, seconds)
    if left > 0:
        outer.update(deadline=start + left, interval=interval)
        if left < seconds:
            signal.setitimer(signal.ITIMER_REAL, left)
    try:
        yield
    finally:
        active = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, outer_handler)
        if "deadline" in outer:
            left = max(outer["deadline"] - time.monotonic(), 1e-6)
            signal.setitimer(signal.ITIMER_REAL, left, outer["interval"])
        elif outer.get("interval"):
            signal.setitimer(signal.ITIMER_REAL, outer["interval"], outer["interval"])
