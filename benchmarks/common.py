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
