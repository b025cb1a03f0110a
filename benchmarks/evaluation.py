"""Evaluation wall time: one env per task (episodes one after another) vs several envs per task.

Evaluates a freshly initialised MT-SAC policy (``experiments/mt10-mtsac.yaml``'s agent) on
MT10 with the protocol's deterministic episodes, ``eval.envs_per_task`` = 1 and = k, the two
taking turns, and prints seconds per evaluation and env steps/s. The protocol (50 episodes per
task every 20,000 steps per task, 500-step episodes) steps 25,000 env steps per task per
evaluation: more than the 20,000 training steps between evaluations, so its speed counts.

    python benchmarks/evaluation.py                   # 10 episodes, k = 10, 2 workers
    python benchmarks/evaluation.py --episodes 50 --envs-per-task 10 --workers 16
    python benchmarks/evaluation.py --kept 3          # also: 3 evaluations in a row, fresh
                                                      # envs each time vs envs kept (a run's way)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import load_line, machine_line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--suite", default="mt10")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per task")
    parser.add_argument("--envs-per-task", type=int, default=10, help="k of the batched run")
    parser.add_argument("--workers", type=int, default=2, help="rollout worker processes")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--kept",
        type=int,
        default=0,
        metavar="N",
        help="also time N evaluations in a row at k: on new envs each (evaluate) and on envs "
        "kept between them (Evaluator, as a training run does)",
    )
    args = parser.parse_args(argv)

    import torch

    from mtrl.agents import MTSAC
    from mtrl.config import resolve_config
    from mtrl.envs import load_suite
    from mtrl.evaluation import Evaluator, evaluate

    cfg = resolve_config("mt10-mtsac", [f"suite={args.suite}"])
    suite = load_suite(cfg.suite, cfg.suite_overrides, seed=0)
    torch.manual_seed(0)
    agent = MTSAC(
        suite.obs_dim, suite.act_dim, suite.num_tasks, cfg.agent, cfg.surgery, args.device
    )

    def policy(obs):
        return agent.act(obs, deterministic=True)

    print(machine_line(), f"| device {args.device}, {args.workers} rollout workers")
    ks = [1, args.envs_per_task]
    times: dict[int, list[float]] = {k: [] for k in ks}
    for _ in range(args.repeats):
        for k in ks:
            start = time.perf_counter()
            evaluate(policy, suite, args.episodes, 0, args.workers, envs_per_task=k)
            times[k].append(time.perf_counter() - start)
    steps = args.episodes * suite.max_episode_steps * suite.num_tasks
    print(
        f"\n{args.suite}: {args.episodes} episodes per task of {suite.max_episode_steps} steps "
        f"({steps:,} env steps), median of {args.repeats}; {load_line()}"
    )
    print(f"{'envs/task':>9s} {'seconds':>8s} {'env steps/s':>12s} {'x k=1':>6s}")
    base = statistics.median(times[1])
    for k in ks:
        t = statistics.median(times[k])
        print(f"{k:9d} {t:8.1f} {steps / t:12.0f} {base / t:6.2f}")
    if args.kept:
        k, n = args.envs_per_task, args.kept
        start = time.perf_counter()
        for i in range(n):
            evaluate(policy, suite, args.episodes, i, args.workers, envs_per_task=k)
        fresh = (time.perf_counter() - start) / n
        start = time.perf_counter()
        with Evaluator(suite, args.episodes, args.workers, envs_per_task=k) as evaluator:
            for i in range(n):
                evaluator(policy, i)
        kept = (time.perf_counter() - start) / n
        print(f"\n{n} evaluations in a row at k = {k}; {load_line()}")
        print(f"{'envs':>5s} {'s/evaluation':>12s} {'env steps/s':>12s} {'x new':>6s}")
        for label, t in (("new", fresh), ("kept", kept)):
            print(f"{label:>5s} {t:12.1f} {steps / t:12.0f} {fresh / t:6.2f}")


if __name__ == "__main__":
    main()
