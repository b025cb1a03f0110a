"""Shared helpers for the benchmark scripts: timing and a description of the machine."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2) -> float:
    """Median wall-clock seconds of ``fn()`` over ``repeats`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_times(
    fns: dict[str, Callable[[], object]],
    rounds: int,
    warmup: int = 1,
    sync: Callable[[], object] | None = None,
    skip: Callable[[str, int], bool] | None = None,
) -> dict[str, float]:
    """Median seconds of each ``fns[name]()``, the methods taking turns in every round.

    Taking turns (in an order rotated each round) spreads a drifting machine load over all
    methods alike. ``sync`` (e.g. ``torch.cuda.synchronize``) runs before and after each timed
    call; ``skip(name, round)`` true leaves that call out (fewer rounds for slow methods).
    """
    names = list(fns)
    for name in names:
        for _ in range(warmup):
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if skip is not None and skip(name, r):
                continue
            if sync is not None:
                sync()
            start = time.perf_counter()
            fns[name]()
            if sync is not None:
                sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items() if t}


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo, or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_line() -> str:
    """One line naming the machine, CPU count and library versions."""
    import torch

    return (
        f"machine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), python {platform.python_version()}"
    )


def load_line() -> str:
    """The 1-minute load average: how busy the (shared) machine was."""
    return f"load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)"


def eval_curve(experiment: str, overrides: list[str], key: str) -> list[tuple[int, float]]:
    """Train ``experiment`` quietly (no checkpoints) and return its (step, ``key``) eval points."""
    from mtrl.config import resolve_config
    from mtrl.logging import read_metrics
    from mtrl.trainer import Trainer

    cfg = resolve_config(experiment, [*overrides, "logger.progress=false", "checkpoint.every=0"])
    trainer = Trainer(cfg)
    trainer.run()
    rows = read_metrics(trainer.run_dir / "metrics.jsonl")
    return [(r["step"], r[key]) for r in rows if key in r]
