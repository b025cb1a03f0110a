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
    python benchmarks/evaluation.py --ending 2 --policy experts
        # also: episodes to their time limit vs ended at the first success (eval.end_on_success),
        # 2 evaluations each on kept envs, with Meta-World's scripted policies (which succeed)

``--policy``: ``fresh`` (default) never succeeds, so its episodes run to their limit either
way; ``experts`` are Meta-World's scripted policies, which solve every MT10 task in about
40-110 steps (the cost of evaluating a policy that has learnt everything); ``half`` uses them on
the first half of the tasks and the fresh policy on the rest. Env steps/s counts the steps the
envs took.
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
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs of the k = 1 vs k rows (0: skip them)"
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--policy", choices=["fresh", "experts", "half"], default="fresh")
    parser.add_argument(
        "--ending",
        type=int,
        default=0,
        metavar="N",
        help="also time N evaluations at k on kept envs with episodes run to their limit and N "
        "with episodes ended at the first success, taking turns (envs and workers started first)",
    )
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
    from mtrl.envs.experts import MetaWorldExperts
    from mtrl.envs.wrappers import task_ids
    from mtrl.evaluation import Evaluator, evaluate

    cfg = resolve_config("mt10-mtsac", [f"suite={args.suite}"])
    suite = load_suite(cfg.suite, cfg.suite_overrides, seed=0)
    torch.manual_seed(0)
    agent = MTSAC(
        suite.obs_dim, suite.act_dim, suite.num_tasks, cfg.agent, cfg.surgery, args.device
    )

    def fresh(obs):
        return agent.act(obs, deterministic=True)

    experts = MetaWorldExperts(suite) if args.policy != "fresh" else None
    expert_tasks = suite.num_tasks if args.policy == "experts" else suite.num_tasks // 2

    def policy(obs):
        if experts is None:
            return fresh(obs)
        actions = fresh(obs)
        rows = task_ids(obs, suite.num_tasks) < expert_tasks
        actions[rows] = experts(obs[rows])
        return actions

    print(machine_line(), f"| device {args.device}, {args.workers} rollout workers")
    print(f"policy: {args.policy}")
    ks = [1, args.envs_per_task] if args.repeats else []
    times: dict[int, list[float]] = {k: [] for k in ks}
    steps: dict[int, list[int]] = {k: [] for k in ks}
    for _ in range(args.repeats):
        for k in ks:
            start = time.perf_counter()
            result = evaluate(policy, suite, args.episodes, 0, args.workers, envs_per_task=k)
            times[k].append(time.perf_counter() - start)
            steps[k].append(result.env_steps)
    print(
        f"\n{args.suite}: {args.episodes} episodes per task of up to {suite.max_episode_steps} "
        f"steps, ended at the first success; {load_line()}"
    )
    if ks:
        print(f"median of {args.repeats}")
        head = f"{'envs/task':>9s} {'seconds':>8s} {'env steps':>10s}"
        print(f"{head} {'env steps/s':>12s} {'x k=1':>6s}")
        base = statistics.median(times[1])
    for k in ks:
        t, n = statistics.median(times[k]), statistics.median(steps[k])
        print(f"{k:9d} {t:8.1f} {n:10,.0f} {n / t:12.0f} {base / t:6.2f}")
    if args.ending:
        k, n = args.envs_per_task, args.ending
        evaluators = {
            end: Evaluator(suite, args.episodes, args.workers, envs_per_task=k, end_on_success=end)
            for end in (False, True)
        }
        runs: dict[bool, list] = {False: [], True: []}
        try:
            for evaluator in evaluators.values():
                evaluator.start()  # workers and envs, which a run starts once
            for i in range(n):
                for end, evaluator in evaluators.items():
                    start = time.perf_counter()
                    result = evaluator(policy, 1 + i)
                    runs[end].append((time.perf_counter() - start, result))
                    print(  # as they come, so a cut-off run still shows them
                        f"evaluation {1 + i}, ended {'at success' if end else 'at the limit'}: "
                        f"{runs[end][-1][0]:.1f} s, {result.env_steps:,} env steps, "
                        f"success {result.success_mean:.3f}"
                    )
        finally:
            for evaluator in evaluators.values():
                evaluator.close()
        print(f"\n{n} evaluations each at k = {k} on kept envs, taking turns; {load_line()}")
        header = f"{'episodes end':>14s} {'s/evaluation':>12s} {'env steps':>10s}"
        print(f"{header} {'env steps/s':>12s} {'success':>8s} {'x limit':>8s}")
        limit = statistics.median(t for t, _ in runs[False])
        for end, label in ((False, "at the limit"), (True, "at success")):
            t = statistics.median(t for t, _ in runs[end])
            n_steps = statistics.median(r.env_steps for _, r in runs[end])
            success = statistics.mean(r.success_mean for _, r in runs[end])
            print(
                f"{label:>14s} {t:12.1f} {n_steps:10,.0f} {n_steps / t:12.0f} {success:8.3f} "
                f"{limit / t:8.2f}"
            )
    if args.kept:
        k, n = args.envs_per_task, args.kept
        start, new_steps = time.perf_counter(), 0
        for i in range(n):
            result = evaluate(policy, suite, args.episodes, i, args.workers, envs_per_task=k)
            new_steps += result.env_steps
        new = (time.perf_counter() - start) / n
        start, kept_steps = time.perf_counter(), 0
        with Evaluator(suite, args.episodes, args.workers, envs_per_task=k) as evaluator:
            for i in range(n):
                kept_steps += evaluator(policy, i).env_steps
        kept = (time.perf_counter() - start) / n
        print(f"\n{n} evaluations in a row at k = {k}; {load_line()}")
        print(f"{'envs':>5s} {'s/evaluation':>12s} {'env steps/s':>12s} {'x new':>6s}")
        for label, t, total in (("new", new, new_steps), ("kept", kept, kept_steps)):
            print(f"{label:>5s} {t:12.1f} {total / n / t:12.0f} {new / t:6.2f}")


if __name__ == "__main__":
    main()
