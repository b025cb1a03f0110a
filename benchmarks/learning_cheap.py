"""Learning on the cheap conflicting suite: mean vs pcgrad vs cagrad over seeds, side by side.

Trains ``experiments/cheap16-<method>.yaml`` (16 point-mass tasks whose goals and action signs
conflict) for each method and seed with the same budget, and prints the mean deterministic
success over seeds at every evaluation, the final per-seed values, and wall time per method
relative to ``mean``.

    python benchmarks/learning_cheap.py                         # 4,000 steps, seeds 0 1 2
    python benchmarks/learning_cheap.py --steps 20000 --seeds 0 1 2 3 4 --suite cheap16
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import eval_curve, machine_line

METHODS = ("mean", "pcgrad", "cagrad")


def success_curve(
    method: str, seed: int, args: argparse.Namespace, out: Path
) -> list[tuple[int, float]]:
    """(step, mean eval success) pairs of one run."""
    overrides = [f"suite={args.suite}", f"seed={seed}", f"steps={args.steps}"]
    overrides += [f"eval.every={args.steps // args.evals}", f"eval.episodes={args.episodes}"]
    return eval_curve(f"cheap16-{method}", [*overrides, f"out={out}"], "eval/success_mean")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=4000, help="env steps per task")
    parser.add_argument("--evals", type=int, default=4, help="evaluations per run")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task and evaluation")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--suite", default="cheap16", help="suite preset")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(machine_line())
    curves: dict[str, list[list[tuple[int, float]]]] = {m: [] for m in args.methods}
    seconds = dict.fromkeys(args.methods, 0.0)
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for method in args.methods:  # interleaved, so load drifts hit every method alike
                start = time.perf_counter()
                curves[method].append(success_curve(method, seed, args, Path(tmp)))
                seconds[method] += time.perf_counter() - start
                print(f"seed {seed} {method:7s} final success {curves[method][-1][-1][1]:.3f}")
    steps = [s for s, _ in curves[args.methods[0]][0]]
    print(f"\n{args.suite}, {len(args.seeds)} seeds: mean eval success over seeds")
    print(f"{'steps':>7s}" + "".join(f"  {m:>8s}" for m in args.methods))
    for k, step in enumerate(steps):
        cells = "".join(
            f"  {statistics.mean(c[k][1] for c in curves[m]):8.3f}" for m in args.methods
        )
        print(f"{step:7d}{cells}")
    print("final success per seed:")
    for m in args.methods:
        print(f"  {m:7s} " + " ".join(f"{c[-1][1]:.3f}" for c in curves[m]))
    base = seconds.get("mean") or next(iter(seconds.values()))
    print(
        "wall time per run (x mean): "
        + ", ".join(
            f"{m} {seconds[m] / len(args.seeds):.0f} s ({seconds[m] / base:.2f}x)"
            for m in args.methods
        )
    )


if __name__ == "__main__":
    main()
