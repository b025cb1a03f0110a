"""Training throughput: env steps/s of a full MT10 training loop per aggregator, with breakdown.

Trains ``experiments/mt10-<method>.yaml`` (MT-SAC 3 x 400, batch 128 per task, 2 rollout
workers) for a short budget per aggregator and path, runs interleaved, and reads the run's own
cumulative timers (``perf/time_*_s`` in metrics.jsonl): waiting for the envs, updates, the part
of the updates spent in the aggregator, and the rest (acting, replay, logging). Throughput
counts env steps of all tasks per second of training wall time (the final evaluation is left
out). Paths: ``eager`` (per-task gradients by vmap, step the envs then update) and ``fast``
(per-task gradients of linear layers from one backward, updates overlapping the env step), and
on a GPU ``graph`` (the fast path with each update replayed from a CUDA graph) and, when asked
for, ``solvers`` (the graph with the device solvers compiled: ``compile_solvers=true``),
``fused`` (with the interior-point solvers as Triton kernels: ``fused_solvers=true``) and
``fused+c`` (both).

    python benchmarks/throughput.py                      # CPU, 250 steps per task after warm-up
    python benchmarks/throughput.py --device cuda --full
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line

METHODS = ("mean", "pcgrad", "cagrad")
EXPERIMENT = {"mean": "mt10-mtsac", "pcgrad": "mt10-pcgrad", "cagrad": "mt10-cagrad"}
_GRAPH = ["agent.task_grads=auto", "overlap=true", "compile=true"]
PATHS = {
    "eager": ["agent.task_grads=vmap", "overlap=false", "compile=false"],
    "fast": ["agent.task_grads=auto", "overlap=true", "compile=false"],
    "graph": [*_GRAPH, "compile_solvers=false", "fused_solvers=false"],
    "solvers": [*_GRAPH, "compile_solvers=true", "fused_solvers=false"],
    "fused": [*_GRAPH, "compile_solvers=false", "fused_solvers=true"],
    "fused+c": [*_GRAPH, "compile_solvers=true", "fused_solvers=true"],
}
"""``graph`` (the fast path with the update replayed from a CUDA graph), ``solvers`` (the
graph with the device solvers compiled by torch.compile), ``fused`` (the graph with the
interior-point solvers as Triton kernels) and ``fused+c`` need a GPU."""


def run_once(method: str, path: str, args: argparse.Namespace, out: Path) -> dict[str, float]:
    """One short training run; its final cumulative timers and throughput."""
    from mtrl.config import resolve_config
    from mtrl.logging import read_metrics
    from mtrl.trainer import Trainer

    overrides = [
        f"suite={args.suite}",
        f"steps={args.warmup + args.steps}",
        f"warmup={args.warmup}",
        f"device={args.device}",
        f"num_workers={args.workers}",
        "eval.every=0",
        "eval.episodes=1",
        "checkpoint.every=0",
        "checkpoint.replay=false",
        "logger.progress=false",
        f"logger.every={max(args.steps // 3, 1)}",  # rows for the steady rate, see below
        f"out={out}",
        *PATHS[path],
    ]
    trainer = Trainer(resolve_config(EXPERIMENT[method], overrides))
    trainer.run()
    rows = [r for r in read_metrics(trainer.run_dir / "metrics.jsonl") if "perf/time_env_s" in r]
    row, first = rows[-1], rows[0]
    wall = row["perf/time_wall_s"] - row["perf/time_eval_s"]
    # the steady rate, from the first log row on: worker start, warm-up, capture and compiles
    # (the first updates) left out, as they are from a 2M-step run's rate
    steady_wall = wall - (first["perf/time_wall_s"] - first["perf/time_eval_s"])
    env, update = row["perf/time_env_s"], row["perf/time_update_s"]
    steps = (args.warmup + args.steps) * trainer.suite.num_tasks
    return {
        "wall_s": wall,
        "env_s": env,
        "update_s": update,
        "surgery_s": row["perf/time_surgery_s"],
        "other_s": max(wall - env - update, 0.0),
        "sps": steps / wall,
        "steady_sps": (
            (row["step"] - first["step"]) * trainer.suite.num_tasks / steady_wall
            if steady_wall > 0
            else float("nan")  # one log row: too short a run for a steady rate
        ),
        "ms_per_update": 1000 * update / args.steps,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=None, help="update steps per task")
    parser.add_argument("--warmup", type=int, default=50, help="random-action steps first")
    parser.add_argument("--repeats", type=int, default=None, help="runs per method")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", type=int, default=2, help="rollout worker processes")
    parser.add_argument("--suite", default="mt10")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--paths", nargs="+", default=None, choices=list(PATHS))
    parser.add_argument("--full", action="store_true", help="1,000 steps, 3 repeats")
    args = parser.parse_args(argv)
    args.steps = args.steps or (1000 if args.full else 150)
    args.repeats = args.repeats or (3 if args.full else 1)
    gpu = args.device.startswith("cuda")
    args.paths = args.paths or ["eager", "fast", *(["graph"] if gpu else [])]
    print(machine_line(), f"| device {args.device}, {args.workers} rollout workers")
    if gpu:
        import torch

        print(f"GPU: {torch.cuda.get_device_name()}")
    runs = [(m, p) for m in args.methods for p in args.paths]
    results: dict[tuple[str, str], list[dict[str, float]]] = {r: [] for r in runs}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for method, path in runs:  # interleaved, so load drifts hit every run alike
                results[method, path].append(run_once(method, path, args, Path(tmp)))
    print(
        f"\n{args.suite}: {args.warmup} warm-up + {args.steps} update steps per task, "
        f"median of {args.repeats} run(s) each"
    )
    for path in args.paths:
        print(f"{path}: {' '.join(PATHS[path])}")
    print(
        f"{'method':8s} {'path':7s} {'env steps/s':>11s} {'steady':>7s} {'x mean':>7s} "
        f"{'x eager':>8s} "
        f"{'ms/update':>10s} {'env wait':>9s} {'update':>7s} {'surgery':>8s} {'other':>6s}"
        "   (share of training wall time)"
    )
    medians = {
        r: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for r, rs in results.items()
    }
    for method, path in runs:
        med = medians[method, path]
        base = medians[args.methods[0], path]["sps"]
        eager = medians.get((method, "eager"), med)["sps"]
        wall = med["wall_s"]
        print(
            f"{method:8s} {path:7s} {med['sps']:11.1f} {med['steady_sps']:7.0f} "
            f"{med['sps'] / base:7.2f} "
            f"{med['sps'] / eager:8.2f} {med['ms_per_update']:10.1f} {med['env_s'] / wall:9.0%} "
            f"{med['update_s'] / wall:7.0%} {med['surgery_s'] / wall:8.1%} "
            f"{med['other_s'] / wall:6.0%}"
        )


if __name__ == "__main__":
    main()
