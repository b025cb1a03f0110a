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
    python benchmarks/learning_cheap.py --networks all --methods mean pcgrad  # every architecture

``--networks`` crosses methods with architectures: each runs ``agent=mtsac-small`` (2 x 256, the
same optimisation settings for all) with ``agent.network=<name>`` and the architecture's default
options; Soft Modularization's base encoder is one layer (``agent.hidden=[256]``), as in its
reference, where the others' torso is the 2 x 256 of ``mtsac-small``.
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
NETWORK_OVERRIDES = {"softmod": ["agent.hidden=[256]"]}  # one-layer base encoder, as its reference


def network_overrides(network: str | None) -> list[str]:
    """Overrides that put ``network`` into ``mtsac-small`` (none for the experiments' own)."""
    if network is None:
        return []
    return [f"agent.network={network}", *NETWORK_OVERRIDES.get(network, [])]


def label(network: str | None, method: str) -> str:
    """How a (network, method) cell is named in the tables."""
    return method if network is None else f"{network}/{method}"


def train(
    network: str | None, method: str, seed: int, overrides: list[str]
) -> tuple[str, int, float, Path]:
    """One quiet run in a fresh process; returns (label, seed, seconds, run dir)."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from mtrl.config import EXPERIMENT_DIR, resolve_config
    from mtrl.trainer import Trainer

    experiment = f"cheap16-{method}"
    if not (EXPERIMENT_DIR / f"{experiment}.yaml").is_file():  # any registered aggregator
        overrides = [f"surgery={method}", f"name={experiment}", *overrides]
        experiment = "cheap16-mean"
    cfg = resolve_config(
        experiment,
        [
            f"seed={seed}",
            *network_overrides(network),
            *overrides,
            "logger.progress=false",
            "checkpoint.every=0",
        ],
    )
    start = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.run()
    return label(network, method), seed, time.perf_counter() - start, trainer.run_dir


def finished_runs(out: Path, steps: int) -> dict[tuple[str, str, int], tuple[Path, float]]:
    """Finished runs of ``steps`` steps in ``out`` by (experiment name, network, seed), with
    wall time."""
    found = {}
    for summary in out.glob("*/summary.json"):
        data = json.loads(summary.read_text())
        if data["steps"] == steps:
            key = (data["experiment"], data.get("network", "mlp"), data["seed"])
            found[key] = (summary.parent, float(data["wall_s"]))
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
    parser.add_argument(
        "--networks",
        nargs="+",
        default=None,
        help="architectures to cross with the methods ('all': every registered one), each in "
        "mtsac-small; default: the experiments' own network",
    )
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="runs at a time")
    parser.add_argument("--out", default=None, help="keep the run directories here")
    parser.add_argument("--full", action="store_true", help="4,000 steps, 8 evals, seeds 0-4")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="reuse the finished runs in --out (same experiment, network, seed and steps) and "
        "train the rest",
    )
    args = parser.parse_args(argv)
    if args.methods == ["all"]:
        from mtrl.surgery import list_aggregators

        args.methods = [m for m in list_aggregators() if m != "sum"]
    if args.networks == ["all"]:
        from mtrl.agents.registry import list_networks

        args.networks = list(list_networks())
    networks = args.networks or [None]
    steps = args.steps or (4000 if args.full else 2000)
    seeds = args.seeds or (list(range(5)) if args.full else [0, 1, 2])
    evals = 8 if args.full and args.evals == 4 else args.evals
    print(machine_line(), f"| {args.jobs} runs at a time, one torch thread each")
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="learning_cheap-"))
    overrides = [f"steps={steps}", f"eval.every={steps // evals}"]
    overrides += [f"eval.episodes={args.episodes}", f"out={out}", "torch_threads=1"]
    if args.suite:
        overrides.append(f"suite={args.suite}")
    cells = [(n, m) for n in networks for m in args.methods]
    names = [label(n, m) for n, m in cells]
    curves: dict[str, list] = {name: [] for name in names}
    seconds = dict.fromkeys(names, 0.0)
    jobs = [(n, m, s) for s in seeds for n, m in cells]  # interleaved: load hits all alike
    done = finished_runs(out, steps) if args.resume else {}

    def key(network: str | None, method: str, seed: int) -> tuple[str, str, int]:
        return f"cheap16-{method}", network or "mlp", seed

    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [
            None if key(*job) in done else pool.submit(train, *job, overrides) for job in jobs
        ]
        for (network, method, seed), future in zip(jobs, futures, strict=True):
            name = label(network, method)
            if future is None:
                run_dir, secs = done[key(network, method, seed)]
            else:
                name, seed, secs, run_dir = future.result()
            curves[name].append(curve(run_dir))
            seconds[name] += secs
            print(f"seed {seed} {name:16s} final success {curves[name][-1][-1][1]:.3f}", flush=True)
    print(f"\n{len(seeds)} seeds, {steps} steps: mean eval success over seeds (all | quiet tasks)")
    print(f"{'steps':>7s}" + "".join(f"  {m:>15s}" for m in names))
    for k, (step, *_) in enumerate(curves[names[0]][0]):
        row = "".join(
            f"  {statistics.mean(c[k][1] for c in curves[m]):6.3f} | "
            f"{statistics.mean(c[k][2] for c in curves[m]):.3f}"
            for m in names
        )
        print(f"{step:7d}{row}")
    print("final success per seed:")
    width = max(len(m) for m in names)
    for m in names:
        print(f"  {m:{width}s} " + " ".join(f"{c[-1][1]:.3f}" for c in curves[m]))
    base = seconds.get(names[0]) or next(iter(seconds.values()))
    print(
        f"wall time per run (x {names[0]}): "
        + ", ".join(
            f"{m} {seconds[m] / len(seeds):.0f} s ({seconds[m] / base:.2f}x)" for m in names
        )
    )
    print(f"runs: {out}  (compare them: mtrl compare {out}/*)")


if __name__ == "__main__":
    main()
