"""Learning on the cheap conflicting suite: surgery methods over seeds, side by side.

Trains ``experiments/cheap16-<method>.yaml`` (cheap16-scaled: 16 point-mass tasks whose goals
and action signs conflict, two of them with 30x rewards) for each method and seed with the same
budget, ``--jobs`` runs at a time (one torch thread each), and prints the mean deterministic
success over seeds at every evaluation (all tasks, and the 14 quiet tasks alone), the final
per-seed values, and wall time per method relative to ``mean``. The run directories stay in
``--out``, ready for ``mtrl compare``.

    python benchmarks/learning_cheap.py                             # 2,000 steps, seeds 0 1 2
    python benchmarks/learning_cheap.py --full                      # 4,000 steps, seeds 0-4
    python benchmarks/learning_cheap.py --steps 4000 --seeds 0 1 2 3 4 --jobs 15
    python benchmarks/learning_cheap.py --full --methods all --out runs/zoo   # every aggregator
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line

METHODS = ("mean", "pcgrad", "cagrad")
LOUD = "-x"  # task names of scaled-reward tasks end in -x<scale>


def train(method: str, seed: int, overrides: list[str]) -> tuple[str, int, float, Path]:
    """One quiet run in a fresh process; returns (method, seed, seconds, run dir)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mtrl.config import EXPERIMENT_DIR, resolve_config
    from mtrl.trainer import Trainer

    experiment = f"cheap16-{method}"
    if not (EXPERIMENT_DIR / f"{experiment}.yaml").is_file():  # any registered aggregator
        overrides = [f"surgery={method}", f"name={experiment}", *overrides]
        experiment = "cheap16-mean"
    cfg = resolve_config(
        experiment,
        [f"seed={seed}", *overrides, "logger.progress=false", "checkpoint.every=0"],
    )
    start = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.run()
    return method, seed, time.perf_counter() - start, trainer.run_dir


def finished_runs(out: Path, steps: int) -> dict[tuple[str, int], tuple[Path, float]]:
    """Finished runs of ``steps`` steps in ``out`` by (experiment name, seed), with wall time."""
    found = {}
    for summary in out.glob("*/summary.json"):
        data = json.loads(summary.read_text())
        if data["steps"] == steps:
            found[(data["experiment"], data["seed"])] = (summary.parent, float(data["wall_s"]))
    return found


def curve(run_dir: Path) -> list[tuple[int, float, float]]:
    """(step, success over all tasks, success over the quiet tasks) at every evaluation."""
    points = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = json.loads(line)
        if "eval/success_mean" in row:
            quiet = [v for k, v in row.items() if k.startswith("eval/success/") and LOUD not in k]
            points.append((row["step"], row["eval/success_mean"], statistics.mean(quiet)))
    return points


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=None, help="env steps per task")
    parser.add_argument("--seeds", type=int, nargs="+", default=None)
    parser.add_argument("--evals", type=int, default=4, help="evaluations per run")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task and evaluation")
    parser.add_argument("--suite", default=None, help="suite preset (default: the experiments')")
    parser.add_argument(
        "--methods",
        nargs="+",
        default=list(METHODS),
        help="aggregators to train ('all': every registered one); those without a cheap16-<name> "
        "experiment run cheap16-mean with surgery=<name>",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs at a time")
    parser.add_argument("--out", default=None, help="keep the run directories here")
    parser.add_argument("--full", action="store_true", help="4,000 steps, 8 evals, seeds 0-4")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse the finished runs in --out (same experiment, seed and steps) and train the rest",
    )
    args = parser.parse_args(argv)
    if args.methods == ["all"]:
        from mtrl.surgery import list_aggregators

        args.methods = [m for m in list_aggregators() if m != "sum"]
    steps = args.steps or (4000 if args.full else 2000)
    seeds = args.seeds or (list(range(5)) if args.full else [0, 1, 2])
    evals = 8 if args.full and args.evals == 4 else args.evals
    print(machine_line(), f"| {args.jobs} runs at a time, one torch thread each")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="learning_cheap-"))
    overrides = [f"steps={steps}", f"eval.every={steps // evals}"]
    overrides += [f"eval.episodes={args.episodes}", f"out={out}", "torch_threads=1"]
    if args.suite:
        overrides.append(f"suite={args.suite}")
    curves: dict[str, list] = {m: [] for m in args.methods}
    seconds = dict.fromkeys(args.methods, 0.0)
    jobs = [(m, s) for s in seeds for m in args.methods]  # interleaved: load hits all alike
    done = finished_runs(out, steps) if args.resume else {}
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [
            None if (f"cheap16-{m}", s) in done else pool.submit(train, m, s, overrides)
            for m, s in jobs
        ]
        for (method, seed), future in zip(jobs, futures, strict=True):
            if future is None:
                run_dir, secs = done[(f"cheap16-{method}", seed)]
            else:
                method, seed, secs, run_dir = future.result()
            curves[method].append(curve(run_dir))
            seconds[method] += secs
            print(f"seed {seed} {method:12s} final success {curves[method][-1][-1][1]:.3f}")
    print(f"\n{len(seeds)} seeds, {steps} steps: mean eval success over seeds (all | quiet tasks)")
    print(f"{'steps':>7s}" + "".join(f"  {m:>15s}" for m in args.methods))
    for k, (step, *_) in enumerate(curves[args.methods[0]][0]):
        cells = "".join(
            f"  {statistics.mean(c[k][1] for c in curves[m]):6.3f} | "
            f"{statistics.mean(c[k][2] for c in curves[m]):.3f}"
            for m in args.methods
        )
        print(f"{step:7d}{cells}")
    print("final success per seed:")
    for m in args.methods:
        print(f"  {m:7s} " + " ".join(f"{c[-1][1]:.3f}" for c in curves[m]))
    base = seconds.get("mean") or next(iter(seconds.values()))
    print(
        "wall time per run (x mean): "
        + ", ".join(
            f"{m} {seconds[m] / len(seeds):.0f} s ({seconds[m] / base:.2f}x)" for m in args.methods
        )
    )
    print(f"runs: {out}  (compare them: mtrl compare {out}/*)")


if __name__ == "__main__":
    main()
