"""The ``mtrl`` command line: train, eval, compare, envs, aggregators."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mtrl.errors import MtrlError

TRAIN_HELP = """\
Train MT-SAC with gradient surgery on a task suite (or, with agent=sb3-sac-per-task, one
Stable-Baselines3 SAC per task: the single-task reference).

EXPERIMENT is a name under experiments/ (e.g. quickstart, mt10-pcgrad) or a YAML path.
Overrides are KEY=VALUE pairs; every key is listed below with what it accepts and its default.
Values are read as YAML 1.2 where a number, list or true/false is expected (010 is ten, 3e-4 a
number, [64, 64] a list) and taken as written where text is expected (off, 2024-01-01).
Everything is checked before the run starts; a bad key or value is a one-line error.
  suite=NAME|PATH   the task suite (mtrl envs lists them); suite.KEY=V overrides a suite field
  agent=NAME|PATH   the agent preset under agents/; agent.KEY=V overrides a hyperparameter
  surgery=NAME      the aggregator (mtrl aggregators lists them and their options);
                    surgery.OPTION=V sets an option
  resume=RUN_DIR    continue a run from its checkpoint; only steps, device, num_workers,
                    torch_threads, step_timeout, eval.*, logger.* and checkpoint.* may change
Outputs go to a new run directory OUT/<suite>__<method>__seed<k>__<time>__<config hash>:
config.yaml (the resolved config), metrics.jsonl, system.json, checkpoint.pt, summary.json.
SIGTERM or Ctrl-C stops at the end of the current step with a checkpoint and prints the resume
command (a second one stops at once). Resuming a finished run does nothing.

examples:
  mtrl train quickstart
  mtrl train mt10-pcgrad seed=3 steps=200000
  mtrl train cheap16-cagrad surgery.c=0.9 eval.episodes=20
  mtrl train resume=runs/<run directory>

"""

COMPARE_HELP = """\
Compare runs of several methods (and seeds) on one suite, from their run directories alone.

RUN can be a run directory, a folder of runs (searched recursively, as tensorboard --logdir: a run
directory is one holding config.yaml; wandb/, tensorboard/ and hidden folders are skipped) or a
glob pattern (quote it to let mtrl expand it); a run reached twice counts once. Runs are grouped
by --by (default: the aggregator, cfg.surgery.name, or the algorithm of runs without surgery such
as sb3-sac-per-task) and compared at one env step: --step, or the
smallest final step among them; runs still going count with their latest evaluation. For each group:
number of runs, mean success and IQM (interquartile mean over runs x tasks, as rliable) with 95%
stratified bootstrap CIs, success per task, and wall-clock per env step relative to `mean`.
Outputs in --out: comparison.md (tables and figures), comparison.json, comparison.csv,
success_curve.png, task_success.png, conflict.png.

examples:
  mtrl compare runs/cheap16__*
  mtrl compare runs/cheap16-compare --out comparisons/cheap16   # every run below the folder
  mtrl compare 'runs/cheap16__*' --out comparisons/cheap16 --reps 5000
  mtrl compare runs/mt10__* --by experiment --wandb
  mtrl compare runs/cheap16-scaled__* --step 2000             # mid-training, where they differ
  mtrl compare runs/cheap16__cagrad__* --by surgery.c      # one group per CAGrad c
"""

RESUMABLE = (
    "steps",
    "eval.",
    "logger.",
    "checkpoint.",
    "num_workers",
    "device",
    "torch_threads",
    "step_timeout",
)


def _print_table(summary: dict[str, Any]) -> None:
    names = list(summary["success"])
    width = max(12, *(len(n) for n in names))
    print(f"\n{'task':{width}s}  success  return")
    for name in names:
        print(f"{name:{width}s}  {summary['success'][name]:7.2f}  {summary['return'][name]:8.2f}")
    print(f"{'mean':{width}s}  {summary['success_mean']:7.2f}  {summary['return_mean']:8.2f}")
    print(f"({summary['eval_episodes']} deterministic episodes per task, {summary['steps']} steps)")


SWEEP_HELP = """\
Run every combination of the --grid values and the --seeds as one trial each: an ordinary run
directory under OUT/NAME/ (what mtrl train writes), scheduled by Ray Tune on this machine or on
a Ray cluster (--address). Each trial asks for 1 + num_workers CPUs (and --gpus-per-trial). A
trial whose process dies is retried up to --max-failures times and resumes from its own last
checkpoint; a config or training error fails it once. Every trial's config is checked before
anything starts. At the end the sweep compares the finished trials (comparison.md and figures
in OUT/NAME/), grouped by the grid keys; the W&B group is the sweep's name. Needs Ray:
pip install 'mtrl-bench[sweep]'.

examples:
  mtrl sweep cheap16-mean --grid surgery=mean,pcgrad,cagrad --seeds 0-4
  mtrl sweep mt10-cagrad --grid surgery.c=0.2,0.5,0.9 --seeds 0-9 --gpus-per-trial 0.25
  mtrl sweep mt10-mtsac --grid surgery=mean,pcgrad --seeds 0-9 --address auto --out /shared/sweeps
  mtrl sweep cheap16-mean --grid surgery=mean,pcgrad,cagrad --seeds 0-4 --resume
"""


def cmd_train(args: argparse.Namespace) -> int:
    from mtrl.config import resolve_config
    from mtrl.configtools import parse_override
    from mtrl.runners import make_runner

    items = list(args.overrides)
    experiment = args.experiment
    if experiment is not None and "=" in experiment:
        items.insert(0, experiment)
        experiment = None
    resume = [parse_override(i)[1] for i in items if i.startswith("resume=")]
    items = [i for i in items if not i.startswith("resume=")]
    if resume:
        trainer = _resume_trainer(str(resume[-1]), items)
    else:
        if experiment is None:
            raise MtrlError("give an experiment (e.g. mtrl train quickstart) or resume=RUN_DIR")
        trainer = make_runner(resolve_config(experiment, items))
    summary = trainer.run()
    _print_table(summary)
    outputs = getattr(trainer, "outputs", "config.yaml, metrics.jsonl, checkpoint.pt, summary.json")
    print(f"outputs: {trainer.run_dir} ({outputs})")
    return 0


def _resume_trainer(run_dir: str, items: list[str]):
    from mtrl.config import config_from_dict, config_to_dict
    from mtrl.configtools import parse_override, set_dotted
    from mtrl.runners import make_runner, runner_spec
    from mtrl.trainer import read_run_config

    cfg = read_run_config(run_dir)
    if not runner_spec(cfg.agent.algorithm).resume:
        raise MtrlError(
            f"runs of agent.algorithm={cfg.agent.algorithm} cannot be resumed; start a new run"
        )
    data = config_to_dict(cfg)
    for item in items:
        key, value = parse_override(item)
        if not key.startswith(RESUMABLE):
            raise MtrlError(
                f"{key!r} cannot change on resume; allowed: steps, device, num_workers, "
                "torch_threads, step_timeout, eval.*, logger.*, checkpoint.*"
            )
        set_dotted(data, key, value)
    return make_runner(config_from_dict(data), run_dir=run_dir, resume=True)


def cmd_eval(args: argparse.Namespace) -> int:
    from mtrl.envs import load_suite
    from mtrl.evaluation import evaluate
    from mtrl.rundir import make_device, read_run_config
    from mtrl.runners import load_target, runner_spec

    path = Path(args.run)
    run_dir = path.parent if path.is_file() else path
    cfg = read_run_config(run_dir)
    device = make_device(args.device or cfg.device)
    spec = runner_spec(cfg.agent.algorithm)
    if not spec.policy:
        raise MtrlError(f"mtrl eval cannot load runs of agent.algorithm={cfg.agent.algorithm}")
    policy, step = load_target(spec.policy)(path, cfg, device)
    suite = load_suite(cfg.suite, cfg.suite_overrides, seed=cfg.seed)
    episodes = args.episodes if args.episodes is not None else cfg.eval.episodes
    envs = args.envs_per_task or cfg.eval.envs_per_task
    result = evaluate(
        policy,
        suite,
        episodes,
        args.seed,
        args.num_workers,
        cfg.step_timeout,
        envs,
        cfg.eval.end_on_success,
    )
    summary = {
        "success": dict(zip(result.task_names, result.success.tolist(), strict=True)),
        "return": dict(zip(result.task_names, result.returns.tolist(), strict=True)),
        "success_mean": result.success_mean,
        "return_mean": result.return_mean,
        "eval_episodes": episodes,
        "steps": step,
    }
    _print_table(summary)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from datetime import datetime

    from mtrl.compare import compare
    from mtrl.compare.report import console_text

    out = args.out or str(Path("comparisons") / datetime.now().strftime("%Y%m%d-%H%M%S"))
    result = compare(
        args.runs,
        out,
        by=args.by,
        reps=args.reps,
        seed=args.seed,
        wandb=args.wandb_mode if args.wandb else None,
        step=args.step,
    )
    for warning in result.comparison.warnings:
        print(f"mtrl compare: warning: {warning}", file=sys.stderr)
    print(console_text(result.comparison))
    print(
        f"\noutputs: {out} (comparison.md, comparison.json, comparison.csv, "
        + ", ".join(p.name for p in result.images.values())
        + ")"
    )
    if result.wandb_dir is not None:
        print(f"W&B run: {result.wandb_dir}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    from mtrl.config import experiment_path
    from mtrl.sweep import SweepSpec, parse_grid, parse_seeds, run_sweep

    name = args.name or Path(experiment_path(args.experiment)).stem
    spec = SweepSpec(
        experiment=args.experiment,
        overrides=list(args.overrides),
        grid=[parse_grid(g) for g in args.grid],
        seeds=parse_seeds(args.seeds),
        out=Path(args.out),
        name=name,
        address=args.address,
        cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial,
        max_failures=args.max_failures,
        resume=args.resume,
        num_cpus=args.num_cpus,
        refresh_s=args.refresh,
        compare=not args.no_compare,
    )
    return run_sweep(spec)


def cmd_envs(args: argparse.Namespace) -> int:
    from mtrl.envs import list_suites, load_suite

    if args.suite:
        suite = load_suite(args.suite)
        print(
            f"{suite.name}: {suite.num_tasks} tasks, obs {suite.obs_dim} (incl. one-hot), "
            f"actions {suite.act_dim}, episodes of {suite.max_episode_steps} steps"
        )
        for i, name in enumerate(suite.task_names):
            print(f"  {i:3d}  {name}")
        return 0
    suites = list_suites()
    width = max(len(n) for n in suites)
    for name, description in suites.items():
        print(f"{name:{width}s}  {description}")
    print("\n`mtrl envs NAME` lists a suite's tasks; README: 'Plug in your own environment'.")
    return 0


def cmd_aggregators(args: argparse.Namespace) -> int:
    from mtrl.confighelp import aggregators_text

    print(aggregators_text())
    return 0


def cmd_networks(args: argparse.Namespace) -> int:
    from mtrl.confighelp import networks_text

    print(networks_text())
    return 0


def _at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum``, else a one-line usage error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mtrl",
        description="Multi-task RL with gradient surgery: MT-SAC on Meta-World MT10/MT50, "
        "gymnasium envs and a cheap built-in suite.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from mtrl.confighelp import train_keys_text

    train = sub.add_parser(
        "train",
        help="train an experiment",
        description=TRAIN_HELP,
        epilog=train_keys_text(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train.add_argument("experiment", nargs="?", help="experiment name or YAML path")
    train.add_argument("overrides", nargs="*", help="key=value overrides")
    train.set_defaults(fn=cmd_train)
    ev = sub.add_parser(
        "eval",
        help="evaluate a trained run",
        description="Evaluate the policy of a run directory (or a checkpoint file) "
        "deterministically, N episodes per task; prints per-task success.",
    )
    ev.add_argument("run", help="run directory or checkpoint.pt")
    ev.add_argument(
        "--episodes", type=_at_least(1), default=None, help="episodes per task (default: run's)"
    )
    ev.add_argument("--seed", type=int, default=12345, help="env seed of the evaluation")
    ev.add_argument("--device", default="", help="cpu or cuda (default: the run's)")
    ev.add_argument("--num-workers", type=_at_least(0), default=0, help="rollout worker processes")
    ev.add_argument(
        "--envs-per-task",
        type=_at_least(1),
        default=None,
        help="envs per task stepped together, sharing its episodes (default: the run's)",
    )
    ev.set_defaults(fn=cmd_eval)
    cmp = sub.add_parser(
        "compare",
        help="compare runs of several methods: tables, bootstrap CIs, plots, W&B",
        description=COMPARE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmp.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run directories, folders of runs (searched recursively) or glob patterns",
    )
    cmp.add_argument(
        "--by",
        default="aggregator",
        help="group runs by: aggregator (default), experiment, or any dotted config key "
        "(e.g. surgery.c, agent.hidden, seed), or several joined by commas (aggregator,surgery.c)",
    )
    cmp.add_argument("--out", default="", help="output folder (default: comparisons/<time>)")
    cmp.add_argument(
        "--step",
        type=_at_least(1),
        default=None,
        help="compare at this env step per task (the latest evaluation at or before it; "
        "default: the smallest final step)",
    )
    cmp.add_argument(
        "--reps", type=_at_least(1), default=2000, help="bootstrap resamples (default 2000)"
    )
    cmp.add_argument("--seed", type=int, default=0, help="seed of the bootstrap (default 0)")
    cmp.add_argument(
        "--wandb",
        action="store_true",
        help="also log the table and figures to a W&B run (job type compare, project from the "
        "runs' logger.project), online with a login, else offline under OUT/wandb",
    )
    cmp.add_argument(
        "--wandb-mode",
        default="online",
        choices=["online", "offline"],
        help="with --wandb: online (default; offline without a login) or offline",
    )
    cmp.set_defaults(fn=cmd_compare)
    sweep = sub.add_parser(
        "sweep",
        help="run a grid of methods x seeds x hyperparameters on Ray, then compare",
        description=SWEEP_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sweep.add_argument("experiment", help="experiment name or YAML path")
    sweep.add_argument("overrides", nargs="*", help="key=value overrides shared by every trial")
    sweep.add_argument(
        "--grid",
        action="append",
        default=[],
        metavar="KEY=V1,V2",
        help="a config key and its values (repeat for more keys; every combination is a trial)",
    )
    sweep.add_argument("--seeds", default="0", help="seeds, e.g. 0-9 or 0,3,7 (default: 0)")
    sweep.add_argument("--out", default="sweeps", help="root folder of sweeps (default: sweeps)")
    sweep.add_argument("--name", help="sweep name: its folder and W&B group (default: experiment)")
    sweep.add_argument(
        "--address",
        help="Ray cluster to run on: auto (the cluster this node is in) or HEAD:6379 "
        "(default: a Ray started on this machine for the sweep)",
    )
    sweep.add_argument(
        "--num-cpus", type=_at_least(1), help="CPUs of the local Ray (default: all of them)"
    )
    sweep.add_argument(
        "--cpus-per-trial", type=float, help="CPUs per trial (default: 1 + the run's num_workers)"
    )
    sweep.add_argument(
        "--gpus-per-trial",
        type=float,
        default=0.0,
        help="GPUs per trial; a fraction lets runs share a GPU (default: 0)",
    )
    sweep.add_argument(
        "--max-failures",
        type=_at_least(0),
        default=2,
        help="retries of a trial whose process died; it resumes from its checkpoint (default: 2)",
    )
    sweep.add_argument(
        "--resume", action="store_true", help="continue this sweep: skip the finished trials"
    )
    sweep.add_argument(
        "--refresh", type=float, default=10.0, help="seconds between progress tables (default: 10)"
    )
    sweep.add_argument(
        "--no-compare", action="store_true", help="do not write the comparison at the end"
    )
    sweep.set_defaults(fn=cmd_sweep)
    envs = sub.add_parser(
        "envs",
        help="list task suites, or the tasks of one",
        description="List the suite presets under envs/, or with NAME the tasks of that suite.",
    )
    envs.add_argument("suite", nargs="?", help="suite preset name or YAML path")
    envs.set_defaults(fn=cmd_envs)
    agg = sub.add_parser(
        "aggregators",
        help="list gradient surgery methods and their options",
        description="List the registered aggregators with their options and defaults.",
    )
    agg.set_defaults(fn=cmd_aggregators)
    nets = sub.add_parser(
        "networks",
        help="list the actor/critic architectures and their options",
        description="List the registered architectures (agent.network) with their options.",
    )
    nets.set_defaults(fn=cmd_networks)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mtrl`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.fn(args)
    except MtrlError as exc:
        signum = getattr(exc, "signum", None)
        if signum:  # stopped by SIGTERM or Ctrl-C, with a checkpoint: not an error of the user
            print(f"mtrl: {exc}", file=sys.stderr)
            return 128 + signum
        print(f"mtrl: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mtrl: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
