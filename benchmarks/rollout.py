"""Env-steps/s of Meta-World suites: gymnasium Sync/AsyncVectorEnv vs mtrl's ``Rollout``.

Every method steps the same envs (the suite's ``env_factory``, so the same wrappers), from
the same seed, with the same pre-drawn random actions: a warm-up, then ``--steps`` timed
vector steps, split into ``--rounds`` rounds in which the methods take turns, so a load that
drifts (other processes on the machine) hits them all alike; steps/s is the median round.
Env construction is timed separately and excluded from steps/s.

    python benchmarks/rollout.py                  # MT10 and MT50, N in {0, 1, 2, cpus}
    python benchmarks/rollout.py --suites mt10 --steps 500
    python benchmarks/rollout.py --full           # every N up to cpus, more steps
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import gymnasium as gym
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import cpu_model  # benchmarks/common.py, next to this script

from mtrl.envs import TaskSuite, load_suite
from mtrl.rollout import Rollout


@dataclass
class Method:
    """A built vectorised env under test: its name, build time and step function."""

    name: str
    build_s: float
    step: Callable[[np.ndarray], object]
    close: Callable[[], object]
    rates: list[float] = field(default_factory=list)


def build_vector(suite: TaskSuite, strategy: str) -> Method:
    """A gymnasium vector env over the suite's envs (same-step autoreset, like ours)."""
    cls = gym.vector.SyncVectorEnv if strategy == "sync" else gym.vector.AsyncVectorEnv
    factories = [suite.env_factory(i) for i in range(suite.num_tasks)]
    start = time.perf_counter()
    env = cls(factories, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    build = time.perf_counter() - start
    env.reset(seed=0)
    return Method(cls.__name__, build, env.step, env.close)


def build_rollout(suite: TaskSuite, workers: int) -> Method:
    """mtrl's Rollout with ``workers`` processes (0: in-process)."""
    start = time.perf_counter()
    rollout = Rollout(suite, num_workers=workers, seed=0)
    build = time.perf_counter() - start
    rollout.reset()
    return Method(f"Rollout N={workers}", build, rollout.step, rollout.close)


def run_rounds(methods: list[Method], actions: np.ndarray, warmup: int, rounds: int) -> None:
    """Warm every method up, then time them in turn, ``rounds`` times (fair under drifting load)."""
    for m in methods:
        for a in actions[:warmup]:
            m.step(a)
    chunks = np.array_split(actions[warmup:], rounds)
    for chunk in chunks:
        for m in methods:
            start = time.perf_counter()
            for a in chunk:
                m.step(a)
            m.rates.append(chunk.shape[0] * chunk.shape[1] / (time.perf_counter() - start))


def worker_counts(full: bool) -> list[int]:
    cpus = os.cpu_count() or 1
    return list(range(cpus + 1)) if full else sorted({0, 1, min(2, cpus), cpus})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="timed vector steps (default 200, 1000 --full)")
    parser.add_argument("--warmup", type=int, default=20, help="untimed vector steps first")
    parser.add_argument("--suites", default="mt10,mt50", help="comma-separated suite presets")
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds, methods in turn")
    parser.add_argument("--full", action="store_true", help="every N up to the cpu count")
    args = parser.parse_args(argv)
    steps = args.steps or (1000 if args.full else 200)

    cpus = os.cpu_count()
    print(f"machine: {cpus} cpus, {cpu_model()}, load average {os.getloadavg()[0]:.2f}")
    versions = ", ".join(f"{p} {version(p)}" for p in ("numpy", "gymnasium", "metaworld", "mujoco"))
    print(f"python {platform.python_version()}, {versions}")
    print(
        f"{steps} timed vector steps per method after {args.warmup} warm-up steps, random "
        f"actions; methods take turns over {args.rounds} rounds, steps/s is the median round\n"
    )

    for name in args.suites.split(","):
        start = time.perf_counter()
        suite = load_suite(name.strip(), seed=0)
        load = time.perf_counter() - start
        rng = np.random.default_rng(0)
        actions = rng.uniform(-1, 1, (args.warmup + steps, suite.num_tasks, suite.act_dim))
        actions = actions.astype(np.float32)
        methods: list[Method] = []
        try:
            methods.append(build_vector(suite, "sync"))
            methods.append(build_vector(suite, "async"))
            methods += [build_rollout(suite, n) for n in worker_counts(args.full)]
            run_rounds(methods, actions, args.warmup, args.rounds)
        finally:
            for m in methods:
                m.close()
        base = float(np.median(methods[0].rates))
        print(f"{name}: {suite.num_tasks} tasks, load_suite {load:.1f} s")
        print(f"| {'method':<16} | {'build s':>7} | {'env-steps/s':>11} | {'vs sync':>7} |")
        print(f"| {'-' * 16} | {'-' * 6}: | {'-' * 10}: | {'-' * 6}: |")
        for m in methods:
            rate = float(np.median(m.rates))
            print(f"| {m.name:<16} | {m.build_s:7.1f} | {rate:11,.0f} | {rate / base:6.2f}x |")
        print(f"(load average now {os.getloadavg()[0]:.2f})\n", flush=True)


if __name__ == "__main__":
    main()
