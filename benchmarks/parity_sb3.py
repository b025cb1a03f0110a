"""Single-task parity: mtrl's MT-SAC vs Stable-Baselines3 SAC on Pendulum-v1, side by side.

Same budget, seeds, network (2 x 256), batch (256), learning rate, warm-up of random actions
(100 steps) and evaluation (10 deterministic episodes at the same steps). mtrl runs Pendulum
through the plug-in path (``envs/pendulum.yaml``), so its observation carries a one-hot of size 1.

    python benchmarks/parity_sb3.py                 # 8,000 steps, seeds 0 1 2
    python benchmarks/parity_sb3.py --quick         # 4,000 steps, seed 0
    python benchmarks/parity_sb3.py --full          # 20,000 steps, seeds 0-4

``--suite mt1-reach`` (or mt1-push, any one-task suite) trains ``experiments/mt1-reach-parity.yaml``
(MT-SAC, 2 x 256, batch 256, 1,500 warm-up steps, 25,000 steps, 10 evaluation episodes every
2,500 steps) beside the same experiment with ``agent.algorithm=sb3-sac-per-task`` (SB3's SAC on
the same env, one-hot included), ``--jobs`` runs at a time, then ``mtrl compare`` on the runs
(success and IQM with 95% CIs, curves) into ``--out``/comparison:

    python benchmarks/parity_sb3.py --suite mt1-reach --seeds 0 1 2 3 4 5 6 7 --jobs 2
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import eval_curve, machine_line


def sb3_curve(seed: int, steps: int, every: int, episodes: int) -> list[float]:
    """Mean deterministic return of SB3 SAC after every ``every`` steps."""
    from stable_baselines3 import SAC
    from stable_baselines3.common.evaluation import evaluate_policy

    model = SAC(
        "MlpPolicy",
        gym.make("Pendulum-v1"),
        learning_starts=100,
        batch_size=256,
        policy_kwargs={"net_arch": [256, 256]},
        seed=seed,
        verbose=0,
    )
    eval_env = gym.make("Pendulum-v1")
    eval_env.reset(seed=10_000 + seed)
    curve = []
    for _ in range(steps // every):
        model.learn(every, reset_num_timesteps=False)
        mean, _ = evaluate_policy(model, eval_env, n_eval_episodes=episodes, deterministic=True)
        curve.append(float(mean))
    return curve


def mtrl_curve(seed: int, steps: int, every: int, episodes: int, out: Path) -> list[float]:
    """Mean deterministic return of mtrl's MT-SAC at every ``every`` steps."""
    overrides = [f"seed={seed}", f"steps={steps}", f"eval.every={every}"]
    overrides += [f"eval.episodes={episodes}", f"out={out}"]
    return [v for _, v in eval_curve("pendulum-mtsac", overrides, "eval/return_mean")]


ALGORITHMS = {"mtrl": [], "sb3": ["agent.algorithm=sb3-sac-per-task"]}
"""The two sides of the Meta-World parity runs: overrides of ``mt1-reach-parity``."""


def train_mt1(side: str, seed: int, suite: str, steps: int | None, out: Path) -> tuple[str, float]:
    """One Meta-World parity run in a fresh process (one torch thread); (side, seconds)."""
    import os

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mtrl.config import resolve_config
    from mtrl.runners import make_runner

    overrides = [f"suite={suite}", f"seed={seed}", f"out={out}", "torch_threads=1"]
    overrides += ["logger.progress=false", *ALGORITHMS[side]]
    overrides += [f"steps={steps}"] if steps else []
    start = time.perf_counter()
    make_runner(resolve_config("mt1-reach-parity", overrides)).run()
    return side, time.perf_counter() - start


def metaworld_parity(args: argparse.Namespace) -> None:
    """MT-SAC and SB3 SAC on a one-task Meta-World suite over seeds, then ``mtrl compare``."""
    from concurrent.futures import ProcessPoolExecutor

    from mtrl.cli import main as mtrl_main

    out = Path(args.out)
    jobs = [(side, seed) for seed in args.seeds for side in ALGORITHMS]
    print(machine_line(), f"| {args.jobs} runs at a time, one torch thread each")
    seconds: dict[str, list[float]] = {side: [] for side in ALGORITHMS}
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [
            pool.submit(train_mt1, side, seed, args.suite, args.steps, out / "runs")
            for side, seed in jobs
        ]
        for (side, seed), future in zip(jobs, futures, strict=True):
            seconds[side].append(future.result()[1])
            print(f"{side} seed {seed}: {seconds[side][-1]:.0f} s", flush=True)
    for side, values in seconds.items():
        print(f"wall time per run, {side}: median {statistics.median(values):.0f} s")
    mtrl_main(["compare", str(out / "runs"), "--out", str(out / "comparison")])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=None, help="env steps per run (8,000)")
    parser.add_argument("--evals", type=int, default=4, help="evaluations per run")
    parser.add_argument("--episodes", type=int, default=10, help="episodes per evaluation")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (0 1 2)")
    parser.add_argument("--quick", action="store_true", help="4,000 steps, seed 0 (make bench)")
    parser.add_argument("--full", action="store_true", help="20,000 steps, seeds 0-4")
    parser.add_argument("--suite", default=None, help="a one-task Meta-World suite (mt1-reach)")
    parser.add_argument("--jobs", type=int, default=2, help="Meta-World runs at a time")
    parser.add_argument("--out", default="runs/parity", help="Meta-World runs and comparison")
    args = parser.parse_args(argv)
    if args.suite:
        args.seeds = args.seeds or list(range(8))
        metaworld_parity(args)
        return
    args.steps = args.steps or (4000 if args.quick else 20000 if args.full else 8000)
    args.seeds = args.seeds or ([0] if args.quick else list(range(5)) if args.full else [0, 1, 2])
    torch.set_num_threads(1)
    every = args.steps // args.evals
    print(machine_line())
    curves: dict[str, list[list[float]]] = {"sb3": [], "mtrl": []}
    times = {"sb3": 0.0, "mtrl": 0.0}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            start = time.perf_counter()
            curves["sb3"].append(sb3_curve(seed, args.steps, every, args.episodes))
            times["sb3"] += time.perf_counter() - start
            start = time.perf_counter()
            curves["mtrl"].append(mtrl_curve(seed, args.steps, every, args.episodes, Path(tmp)))
            times["mtrl"] += time.perf_counter() - start
            print(
                f"seed {seed}: sb3 {curves['sb3'][-1][-1]:8.1f}   mtrl {curves['mtrl'][-1][-1]:8.1f}"
            )
    print(f"\nPendulum-v1, {len(args.seeds)} seeds, mean (min..max) deterministic return")
    print(f"{'steps':>7s}  {'SB3 SAC':>26s}  {'mtrl MT-SAC':>26s}")
    for k in range(args.evals):
        cells = []
        for name in ("sb3", "mtrl"):
            values = [c[k] for c in curves[name]]
            cells.append(f"{statistics.mean(values):8.1f} ({min(values):7.1f}..{max(values):7.1f})")
        print(f"{(k + 1) * every:7d}  {cells[0]:>26s}  {cells[1]:>26s}")
    print(
        f"wall time: sb3 {times['sb3']:.0f} s, mtrl {times['mtrl']:.0f} s (ratio {times['mtrl'] / times['sb3']:.2f})"
    )


if __name__ == "__main__":
    main()
