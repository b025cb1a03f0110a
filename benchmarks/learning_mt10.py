"""A short MT10 run on CPU: per-task success at every evaluation, and where the time went.

Trains ``experiments/mt10-short.yaml`` (MT-SAC 3 x 400 on Meta-World MT10, 2 rollout workers)
and prints the deterministic success of each task at every evaluation, then the run's timers.
On a 2-core CPU the quick mode shows the pipeline working end to end, not learning: Meta-World
tasks need far more than 1,000 steps per task (the full mode's 20,000 lift the easy ones).

    python benchmarks/learning_mt10.py                 # 1,000 steps per task, one evaluation
    python benchmarks/learning_mt10.py --full          # 20,000 steps, evaluations every 5,000
    python benchmarks/learning_mt10.py --surgery pcgrad --seed 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=None, help="env steps per task")
    parser.add_argument("--surgery", default="mean", help="aggregator")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--episodes", type=int, default=None, help="eval episodes per task")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--full", action="store_true", help="20,000 steps, 10 episodes")
    args = parser.parse_args(argv)
    steps = args.steps or (20000 if args.full else 1000)
    episodes = args.episodes or (10 if args.full else 2)
    every = 5000 if steps >= 10000 else steps
    print(machine_line(), f"| device {args.device}")

    from mtrl.config import resolve_config
    from mtrl.logging import read_metrics
    from mtrl.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        overrides = [
            f"steps={steps}",
            f"warmup={min(1500, steps // 2)}",
            f"surgery={args.surgery}",
            f"seed={args.seed}",
            f"device={args.device}",
            f"eval.every={every}",
            f"eval.episodes={episodes}",
            "checkpoint.every=0",
            "checkpoint.replay=false",
            "logger.progress=false",
            f"out={tmp}",
        ]
        trainer = Trainer(resolve_config("mt10-short", overrides))
        summary = trainer.run()
        rows = [
            r for r in read_metrics(trainer.run_dir / "metrics.jsonl") if "eval/success_mean" in r
        ]
    tasks = trainer.suite.task_names
    print(f"\nmt10 / {args.surgery}, seed {args.seed}: success per task ({episodes} episodes each)")
    print(f"{'task':26s}" + "".join(f"{r['step']:>8d}" for r in rows))
    for task in tasks:
        print(f"{task:26s}" + "".join(f"{r[f'eval/success/{task}']:8.2f}" for r in rows))
    print(f"{'mean':26s}" + "".join(f"{r['eval/success_mean']:8.2f}" for r in rows))
    t = trainer.timers
    print(
        f"wall {summary['wall_s']:.0f} s: env {t['env']:.0f} s, updates {t['update']:.0f} s "
        f"(aggregator {t['surgery']:.1f} s), evaluation {t['eval']:.0f} s"
    )


if __name__ == "__main__":
    main()
