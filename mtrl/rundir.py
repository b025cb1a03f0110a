"""The run directory every runner writes, and the plumbing runners share to write it.

``<out>/<suite>__<method>__seed<k>__<time>/`` holds ``config.yaml`` (the resolved config),
``metrics.jsonl``, ``system.json``, ``summary.json`` and the runner's checkpoint. ``<method>`` is
the aggregator for MT-SAC and the algorithm's name for runners without surgery (``mtrl.runners``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import yaml

from mtrl.config import TrainConfig, config_from_dict, config_to_dict
from mtrl.configtools import yaml_load
from mtrl.errors import MtrlError
from mtrl.evaluation import EvalResult
from mtrl.logging import ConsoleSink, JsonlSink, Logger, Sink
from mtrl.logging.episodes import EpisodeTracker
from mtrl.logging.system import system_info
from mtrl.runners import method_label

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
SYSTEM = "system.json"
TENSORBOARD = "tensorboard"


def method_of(cfg: TrainConfig) -> str:
    """The method a run stands for: the aggregator of MT-SAC, else the algorithm's name."""
    return method_label(cfg.agent.algorithm, cfg.surgery.name)


def run_name(cfg: TrainConfig) -> str:
    """``<suite>__<method>__seed<k>__<time>``: seeds of one method sort together."""
    suite = Path(cfg.suite).stem
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{suite}__{method_of(cfg)}__seed{cfg.seed}__{stamp}"


def read_run_config(run_dir: str | Path) -> TrainConfig:
    """The resolved config saved in a run directory."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise MtrlError(f"{run_dir} is not a run directory (no {CONFIG})")
    return config_from_dict(yaml_load(path.read_text()))


def make_device(name: str) -> torch.device:
    """The torch device for ``name``; asking for CUDA without one is a user error."""
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise MtrlError(f"device={name} was asked for, but torch sees no CUDA device")
    return torch.device(name)


def create_run_dir(cfg: TrainConfig, run_dir: Path) -> None:
    """Make a new run directory holding the resolved ``config.yaml``; never reuse one."""
    if (run_dir / CONFIG).exists():
        raise MtrlError(f"run directory {run_dir} already holds a run; use resume=")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG).write_text(yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


@dataclass(frozen=True)
class Due:
    """What is due at a step: the same schedule for every runner, so rows line up."""

    evaluate: bool
    """Every ``eval.every`` steps and at the last step."""
    log: bool
    """Every ``logger.every`` steps and at every evaluation."""
    checkpoint: bool
    """Every ``checkpoint.every`` steps before the last (the last step always saves)."""


def due_at(cfg: TrainConfig, step: int) -> Due:
    """What is due once ``step`` env steps per task are done."""
    final = step >= cfg.steps
    evaluate = final or bool(cfg.eval.every and step % cfg.eval.every == 0)
    return Due(
        evaluate=evaluate,
        log=evaluate or step % cfg.logger.every == 0,
        checkpoint=not final and bool(cfg.checkpoint.every and step % cfg.checkpoint.every == 0),
    )


def next_due(cfg: TrainConfig, step: int) -> int:
    """The first step after ``step`` at which something is due (at most ``cfg.steps``)."""
    points = [cfg.steps]
    for every in (cfg.logger.every, cfg.eval.every, cfg.checkpoint.every):
        if every:
            points.append((step // every + 1) * every)
    return min(points)


def check_sinks(cfg: TrainConfig) -> None:
    """Fail early (before a possibly slow suite is built) if an asked-for sink cannot work."""
    if cfg.logger.tensorboard:
        from mtrl.logging.tensorboard_sink import require_tensorboard

        require_tensorboard()


def open_sinks(
    cfg: TrainConfig,
    run_dir: Path,
    suite_name: str,
    keep_until: int | None = None,
    extra: Sequence[Sink] = (),
) -> list[Sink]:
    """The metrics file always; console lines, TensorBoard and W&B as the config asks.

    :param keep_until: on resume, the step of the checkpoint: rows logged after it are dropped.
    :param extra: sinks to log to besides those the config asks for.
    """
    sinks: list[Sink] = [JsonlSink(run_dir / METRICS, keep_until=keep_until)]
    if cfg.logger.progress:
        sinks.append(ConsoleSink())
    if cfg.logger.tensorboard:
        from mtrl.logging.tensorboard_sink import TensorBoardSink

        sinks.append(TensorBoardSink(run_dir / TENSORBOARD, purge_after=keep_until))
    if cfg.logger.wandb != "off":
        from mtrl.logging.wandb_sink import WandbSink

        sinks.append(
            WandbSink(
                cfg.logger.wandb,
                run_dir,
                project=cfg.logger.project,
                entity=cfg.logger.entity,
                name=run_dir.name,
                group=cfg.name or None,
                tags=[method_of(cfg), suite_name],
                config=config_to_dict(cfg),
            )
        )
    return sinks + list(extra)


def write_system(run_dir: Path, device: torch.device, logger: Logger) -> dict[str, Any]:
    """Gather what the run runs on into ``system.json`` and hand it to the sinks."""
    system = system_info(device)
    (run_dir / SYSTEM).write_text(json.dumps(system, indent=2))
    logger.write_info("system", system)
    return system


def run_summary(
    cfg: TrainConfig, suite_name: str, step: int, ev: EvalResult, wall_s: float, run_dir: Path
) -> dict[str, Any]:
    """Final per-task and mean eval success and return, with where the outputs are."""
    return {
        "experiment": cfg.name,
        "suite": suite_name,
        "aggregator": method_of(cfg),
        "seed": cfg.seed,
        "steps": step,
        "eval_episodes": ev.episodes,
        "success_mean": ev.success_mean,
        "return_mean": ev.return_mean,
        "success": dict(zip(ev.task_names, ev.success.tolist(), strict=True)),
        "return": dict(zip(ev.task_names, ev.returns.tolist(), strict=True)),
        "wall_s": wall_s,
        "run_dir": str(run_dir),
    }


def write_summary(run_dir: Path, summary: dict[str, Any]) -> None:
    """Write ``summary.json``: its presence marks a finished run (``mtrl compare``)."""
    (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2))


def row_extras(
    last_eval: EvalResult | None, evaluated: bool, episodes: EpisodeTracker, tasks: int
) -> dict[str, float]:
    """The values a log row adds to the recorded means: the evaluation (when one just ran)
    and the training-episode statistics since the last row (which are then cleared)."""
    extra: dict[str, float] = {}
    if evaluated:
        assert last_eval is not None
        extra.update(last_eval.metrics())
    extra.update(episodes.metrics())
    episodes.reset(tasks)
    return extra


def progress_postfix(
    row: dict[str, float], tasks: int, last_eval: EvalResult | None
) -> dict[str, str]:
    """The progress bar's postfix after a log row: steps/s per task and the latest success."""
    postfix = {"sps": f"{row['perf/env_steps_per_s'] / tasks:.0f}"}
    if last_eval is not None:
        postfix["success"] = f"{last_eval.success_mean:.2f}"
    return postfix
