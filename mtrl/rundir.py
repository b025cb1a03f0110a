"""The run directory every runner writes, and the plumbing runners share to write it.

``<out>/<suite>__<method>__seed<k>__<time>__<hash>/`` holds ``config.yaml`` (the resolved
config), ``metrics.jsonl``, ``system.json``, ``summary.json`` and the runner's checkpoint.
``<method>`` is the aggregator for MT-SAC and the algorithm's name for runners without surgery
(``mtrl.runners``); ``<hash>`` tells apart configs that differ only in options.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import numpy as np
import torch

from mtrl.checkpoint import atomic_write
from mtrl.config import TrainConfig, config_from_dict, config_to_dict
from mtrl.configtools import yaml_load
from mtrl.errors import MtrlError
from mtrl.evaluation import EvalResult
from mtrl.logging import ConsoleSink, JsonlSink, Logger, Sink, read_metrics
from mtrl.logging.episodes import EpisodeTracker
from mtrl.logging.system import system_info
from mtrl.runners import method_label
from mtrl.yamlio import yaml_dump

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.yaml"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
SYSTEM = "system.json"
TENSORBOARD = "tensorboard"


def method_of(cfg: TrainConfig) -> str:
    """The method a run stands for: the aggregator of MT-SAC, else the algorithm's name."""
    return method_label(cfg.agent.algorithm, cfg.surgery.name)


def config_hash(cfg: TrainConfig) -> str:
    """Six hex digits of the resolved config, ``out`` aside (where a run goes is not what it is)."""
    data = config_to_dict(cfg)
    data.pop("out", None)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:6]


def run_name(cfg: TrainConfig, now: datetime | None = None) -> str:
    """``<suite>__<method>__seed<k>__<time>__<hash>``: seeds of one method sort together; the
    hash of the resolved config tells apart runs that differ only in options (``surgery.c``).
    An architecture other than the MLP leads the method: ``mt10__film-pcgrad__seed0__...``."""
    suite = Path(cfg.suite).stem
    stamp = (now or datetime.now()).strftime("%Y%m%d-%H%M%S")
    method = method_of(cfg)
    network = network_of(cfg)
    if network not in ("mlp", ""):
        method = f"{network}-{method}"
    return f"{suite}__{method}__seed{cfg.seed}__{stamp}__{config_hash(cfg)}"


def network_of(cfg: TrainConfig) -> str:
    """The MT-SAC architecture of a run ('' for other algorithms)."""
    return cfg.agent.network if cfg.agent.algorithm == "mtsac" else ""


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


def create_run_dir(cfg: TrainConfig, run_dir: Path, unique: bool = False) -> Path:
    """Make a new run directory holding the resolved ``config.yaml`` and return it; never reuse
    one, even when many runs start at once.

    :param unique: ``run_dir`` is a proposed name (``<out>/<run_name>``): if another run took
        it, take ``<name>-2``, ``<name>-3``, ...; each is claimed with an exclusive mkdir.
        Else ``run_dir`` is used as given (it may exist) and must not hold a run yet.
    """
    text = yaml_dump(config_to_dict(cfg)).encode()
    try:
        if unique:
            run_dir = _claim(run_dir)
        else:
            run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MtrlError(f"cannot create run directory {run_dir}: {exc.strerror or exc}") from exc
    try:
        atomic_write(run_dir / CONFIG, lambda f: f.write(text), exclusive=True)
    except FileExistsError:
        raise MtrlError(f"run directory {run_dir} already holds a run; use resume=") from None
    return run_dir


def _claim(proposed: Path, tries: int = 1000) -> Path:
    """The first of ``proposed``, ``proposed-2``, ... that this process creates itself."""
    proposed.parent.mkdir(parents=True, exist_ok=True)
    for k in range(1, tries + 1):
        candidate = proposed if k == 1 else proposed.with_name(f"{proposed.name}-{k}")
        try:
            os.mkdir(candidate)
        except FileExistsError:
            continue
        return candidate
    raise MtrlError(f"{tries} run directories named {proposed.name}[-k] exist already")


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
    """The metrics file and console lines always; TensorBoard and W&B as the config asks.

    :param keep_until: on resume, the step of the checkpoint: rows logged after it are dropped.
    :param extra: sinks to log to besides those the config asks for.
    """
    # the one-line summary at each evaluation stays without the progress bar (logs, clusters)
    sinks: list[Sink] = [JsonlSink(run_dir / METRICS, keep_until=keep_until), ConsoleSink()]
    if cfg.logger.tensorboard:
        from mtrl.logging.tensorboard_sink import TensorBoardSink

        sinks.append(TensorBoardSink(run_dir / TENSORBOARD, purge_after=keep_until))
    if cfg.logger.wandb != "off":
        from mtrl.logging.wandb_sink import WandbSink

        sinks.append(
            WandbSink(
                cfg.logger.wandb,
                run_dir,
                resume=keep_until is not None,
                timeout=cfg.logger.wandb_timeout,
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
        "network": network_of(cfg),
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
    """Write ``summary.json`` atomically: its presence marks a finished run (``mtrl compare``)."""
    text = json.dumps(summary, indent=2).encode()
    atomic_write(run_dir / SUMMARY, lambda f: f.write(text))


def read_summary(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``summary.json``, or None if it has none (or an unreadable one)."""
    try:
        return json.loads((run_dir / SUMMARY).read_text())
    except (OSError, ValueError):
        return None


def logged_eval(
    run_dir: Path, step: int, task_names: Sequence[str], episodes: int
) -> tuple[int, EvalResult] | None:
    """The latest evaluation in the run's ``metrics.jsonl`` at or before ``step``, with its step
    (None if there is none): what a resumed run last knew of its policy."""
    path = run_dir / METRICS
    rows = read_metrics(path) if path.is_file() else []
    for row in reversed(rows):
        if row.get("step", 0) > step or "eval/success_mean" not in row:
            continue
        try:
            success = [_number(row[f"eval/success/{name}"]) for name in task_names]
            returns = [_number(row[f"eval/return/{name}"]) for name in task_names]
        except KeyError:
            return None
        ev = EvalResult(list(task_names), np.array(success), np.array(returns), episodes)
        return int(row["step"]), ev
    return None


def _number(value: float | None) -> float:
    """A metrics-file value as a float (non-finite values are written as null)."""
    return float("nan") if value is None else float(value)


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


class RunInterrupted(MtrlError):
    """A run stopped on a signal (SIGTERM, Ctrl-C) after saving what it could; ``signum`` is the
    signal (a CLI exits with 128 + signum)."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum


class StopSignals:
    """While entered, SIGTERM (what schedulers and Ray send before killing) and SIGINT (Ctrl-C)
    ask the run to stop at its next consistent point: ``received`` is set, and the runner saves a
    checkpoint there and raises :class:`RunInterrupted`. A second signal stops at once
    (KeyboardInterrupt). Handlers are installed only in the main thread (Python's rule) and the
    previous ones come back on exit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    @property
    def name(self) -> str:
        """The name of the signal received (e.g. ``SIGTERM``), or ''."""
        return signal.Signals(self.received).name if self.received else ""

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum
        note = (
            f"\nmtrl: {signal.Signals(signum).name} received: stopping after this step with a "
            "checkpoint (send it again to stop at once)\n"
        )
        with contextlib.suppress(OSError):  # os.write, not print: it may have interrupted a print
            os.write(2, note.encode())
