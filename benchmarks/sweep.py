"""A sweep on Ray against the same runs one after another: wall time and CPU utilisation.

Runs a methods x seeds grid of ``experiments/cheap16-mean.yaml`` on ``cheap16-scaled`` twice:
(a) ``mtrl train`` for each trial, one after another; (b) ``mtrl sweep`` with the same grid on a
local Ray with every core. Every run has ``torch_threads=1`` in both, so the runs are the same
and only their scheduling differs. Utilisation is the busy share of all cores over each phase,
from /proc/stat.

    python benchmarks/sweep.py                               # 3 methods x 5 seeds, 2,000 steps
    python benchmarks/sweep.py --steps 4000 --seeds 0-9
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of all cores since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields) - idle, sum(fields)


def timed(command: list[str]) -> tuple[float, float]:
    """Run ``command``; its wall seconds and the busy share of all cores meanwhile."""
    busy0, total0 = cpu_times()
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    busy1, total1 = cpu_times()
    return wall, (busy1 - busy0) / max(total1 - total0, 1)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", default="mean,pcgrad,cagrad")
    parser.add_argument("--seeds", default="0-4")
    parser.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args(argv)

    from mtrl.sweep import parse_grid, parse_seeds

    methods = list(parse_grid(f"surgery={args.methods}").values)
    seeds = parse_seeds(args.seeds)
    shared = [
        "suite=cheap16-scaled",
        f"steps={args.steps}",
        f"eval.every={args.steps // 4}",
        "torch_threads=1",
        "logger.progress=false",
    ]
    mtrl = [sys.executable, "-m", "mtrl.cli"]
    print(machine_line())
    trials = len(methods) * len(seeds)
    with tempfile.TemporaryDirectory() as tmp:
        serial = [0.0, 0.0]
        busy0, total0 = cpu_times()
        start = time.perf_counter()
        for method in methods:
            for seed in seeds:
                out = f"out={tmp}/serial"
                cmd = [*mtrl, "train", "cheap16-mean", *shared, f"surgery={method}"]
                subprocess.run(
                    [*cmd, f"seed={seed}", out],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
        serial[0] = time.perf_counter() - start
        busy1, total1 = cpu_times()
        serial[1] = (busy1 - busy0) / max(total1 - total0, 1)
        sweep = timed(
            [
                *mtrl,
                "sweep",
                "cheap16-mean",
                *shared,
                "--grid",
                f"surgery={args.methods}",
                "--seeds",
                args.seeds,
                "--out",
                f"{tmp}/sweep",
                "--no-compare",
            ]
        )
    cores = os.cpu_count()
    print(
        f"\n{trials} runs of cheap16-scaled ({args.methods} x seeds {args.seeds}, "
        f"{args.steps} steps, torch_threads=1) on {cores} cores"
    )
    print(f"{'schedule':22s} {'wall s':>8s} {'x serial':>9s} {'CPU busy':>9s}")
    print(f"{'one after another':22s} {serial[0]:8.0f} {1.0:9.2f} {serial[1]:9.0%}")
    print(f"{'mtrl sweep (Ray)':22s} {sweep[0]:8.0f} {serial[0] / sweep[0]:9.2f} {sweep[1]:9.0%}")


if __name__ == "__main__":
    main()
