"""The run config: one typed dataclass, filled from an experiment YAML plus ``key=value`` overrides.

An experiment file names one suite preset and one agent preset and overrides what it needs::

    suite: mt10               # envs/mt10.yaml (or a path); suite.<key>=... overrides its fields
    agent: mtsac              # agents/mtsac.yaml (or a path); agent.<key>=... overrides its fields
    surgery: pcgrad           # or {name: cagrad, c: 0.9}; surgery.<option>=... on the CLI
    steps: 2000000            # env steps per task
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import mtrl
from mtrl.agents.config import AgentConfig, SurgeryConfig
from mtrl.configtools import (
    from_dict,
    load_yaml,
    parse_override,
    preset_path,
    set_dotted,
    to_dict,
)
from mtrl.errors import MtrlError, close_matches
from mtrl.runners import check_config
from mtrl.surgery import aggregator_options

ROOT = Path(mtrl.__file__).resolve().parents[1]
AGENT_DIR = ROOT / "agents"
EXPERIMENT_DIR = ROOT / "experiments"


@dataclass
class EvalConfig:
    """Deterministic evaluation on separate env instances (Meta-World success protocol)."""

    every: int = 10_000
    """Evaluate every this many env steps per task (0: only at the end)."""
    episodes: int = 10
    """Episodes per task (50 in the full MT presets)."""
    num_workers: int = 0
    """Worker processes stepping the evaluation envs (0: in-process)."""


@dataclass
class LoggerConfig:
    """Where metrics go."""

    every: int = 1_000
    """Record training metrics every this many env steps per task."""
    wandb: Literal["online", "offline", "off"] = "off"
    """Weights & Biases mode."""
    project: str = "mtrl"
    """W&B project."""
    entity: str | None = None
    """W&B entity (team or user); None for the default."""
    wandb_timeout: float = 30.0
    """Seconds an online W&B start may take before the run logs offline instead."""
    tensorboard: bool = False
    """Also write TensorBoard event files to ``<run_dir>/tensorboard`` (needs ``tensorboard``)."""
    progress: bool = True
    """Show a progress bar and a one-line summary at each evaluation on the console."""


@dataclass
class CheckpointConfig:
    """When and what to checkpoint."""

    every: int = 50_000
    """Checkpoint every this many env steps per task (0: only at the end)."""
    replay: bool = True
    """Include the replay buffer (needed for an exact resume; can be large)."""


@dataclass
class TrainConfig:
    """Everything a run needs; saved resolved as ``config.yaml`` in its run directory."""

    suite: str = "cheap4"
    """Suite preset name (``mtrl envs`` lists them) or a YAML path."""
    suite_overrides: dict[str, Any] = field(default_factory=dict)
    """Fields of the suite config to override (``suite.<key>=value`` on the CLI)."""
    agent_preset: str = "mtsac"
    """Agent preset name (``agents/<name>.yaml``) or a YAML path (``agent=...`` on the CLI)."""
    agent: AgentConfig = field(default_factory=AgentConfig)
    """Agent hyperparameters: the preset plus ``agent.<key>=value`` overrides."""
    surgery: SurgeryConfig = field(default_factory=SurgeryConfig)
    """Gradient surgery: ``surgery=<name>`` and ``surgery.<option>=value`` on the CLI."""
    name: str = ""
    """Experiment name (groups seeds); defaults to the experiment file's name."""
    seed: int = 0
    """Run seed: networks, envs, goals, replay sampling, surgery draws."""
    steps: int = 20_000
    """Env steps per task."""
    warmup: int = 1_500
    """Env steps per task with uniformly random actions before the first update."""
    utd: int = 1
    """Gradient updates per vector step after the warm-up."""
    buffer_size: int = 100_000
    """Replay capacity per task (transitions)."""
    device: str = "cpu"
    """cpu, cuda or cuda:<index>."""
    num_workers: int = 0
    """Rollout worker processes (0: step the envs in the training process)."""
    torch_threads: int = 0
    """Torch intra-op threads (0: torch's default); 1 suits several runs side by side."""
    step_timeout: float = 120.0
    """Seconds the envs may take to answer one step or reset before the run stops with an
    error naming the task (an env that hangs)."""
    out: str = "runs"
    """Root folder of run directories."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)


def experiment_path(name_or_path: str) -> Path:
    """An experiment YAML by path or by name under ``experiments/``."""
    return preset_path(name_or_path, EXPERIMENT_DIR, "experiment")


def _section(value: Any, key: str, main_field: str) -> dict[str, Any]:
    """``suite: mt10`` -> {preset: mt10}; a mapping stays a mapping."""
    if isinstance(value, str):
        return {main_field: value}
    if isinstance(value, dict):
        return dict(value)
    raise MtrlError(f"{key!r} must be a name or a mapping, got {value!r}")


def _apply_override(data: dict[str, Any], key: str, value: Any) -> None:
    head, _, rest = key.partition(".")
    if head in ("suite", "agent", "surgery"):
        main = "name" if head == "surgery" else "preset"
        section = _section(data.get(head, {}), head, main)
        if rest:
            set_dotted(section, rest, value)
        else:
            section[main] = value
        data[head] = section
    else:
        set_dotted(data, key, value)


def _resolve_surgery(section: dict[str, Any]) -> SurgeryConfig:
    fields = {"name", "networks", "options"}
    base = {k: v for k, v in section.items() if k in fields}
    options = dict(base.pop("options", {}) or {})
    options.update({k: v for k, v in section.items() if k not in fields})
    surgery = from_dict(SurgeryConfig, base, "surgery")
    valid = aggregator_options(surgery.name)
    for key in options:
        if key not in valid:
            raise MtrlError(
                f"unknown option surgery.{key} for aggregator {surgery.name!r}"
                f"{close_matches(key, valid)}; its options: {', '.join(valid) or 'none'}"
            )
    surgery.options = options
    return surgery


def resolve_config(
    experiment: str | Path | dict[str, Any] | None, overrides: list[str] | None = None
) -> TrainConfig:
    """Build the run config from an experiment (name, path or dict) and ``key=value`` strings."""
    if experiment is None:
        data: dict[str, Any] = {}
    elif isinstance(experiment, dict):
        data = copy.deepcopy(experiment)
    else:
        path = experiment_path(str(experiment))
        data = load_yaml(path)
        data.setdefault("name", path.stem)
    data.pop("description", None)
    for key in [k for k in data if "." in k]:  # dotted keys in a file act like CLI overrides
        _apply_override(data, key, data.pop(key))
    for text in overrides or []:
        _apply_override(data, *parse_override(text))

    suite = _section(data.pop("suite", {}), "suite", "preset")
    agent = _section(data.pop("agent", {}), "agent", "preset")
    surgery = _section(data.pop("surgery", {}), "surgery", "name")
    resolved: dict[str, Any] = dict(data)
    resolved["suite"] = suite.pop("preset", TrainConfig.suite)
    resolved["suite_overrides"] = suite
    agent_preset = str(agent.pop("preset", TrainConfig.agent_preset))
    agent_data = load_yaml(preset_path(agent_preset, AGENT_DIR, "agent"))
    agent_data.pop("description", None)
    for key, value in agent.items():
        set_dotted(agent_data, key, value)
    resolved["agent_preset"] = agent_preset
    resolved["agent"] = from_dict(AgentConfig, agent_data, "agent")
    resolved["surgery"] = _resolve_surgery(surgery)
    cfg = from_dict(TrainConfig, resolved)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Reject values that type checks cannot catch, with one-line messages."""
    checks = [
        (cfg.steps >= 1, "steps must be >= 1"),
        (cfg.warmup >= 0, "warmup must be >= 0"),
        (cfg.utd >= 1, "utd must be >= 1"),
        (cfg.buffer_size >= 1, "buffer_size must be >= 1"),
        (cfg.num_workers >= 0, "num_workers must be >= 0"),
        (cfg.torch_threads >= 0, "torch_threads must be >= 0"),
        (cfg.eval.episodes >= 1, "eval.episodes must be >= 1"),
        (cfg.eval.every >= 0, "eval.every must be >= 0"),
        (cfg.logger.every >= 1, "logger.every must be >= 1"),
        (cfg.checkpoint.every >= 0, "checkpoint.every must be >= 0"),
        (cfg.agent.batch_size >= 1, "agent.batch_size must be >= 1"),
        (len(cfg.agent.hidden) >= 1, "agent.hidden needs at least one layer"),
        (cfg.device == "cpu" or cfg.device.startswith("cuda"), "device must be cpu or cuda[:i]"),
    ]
    for ok, message in checks:
        if not ok:
            raise MtrlError(message)
    check_config(cfg)  # what the chosen agent.algorithm does not implement


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config as plain data (YAML/JSON ready)."""
    return to_dict(cfg)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a resolved config saved by ``config_to_dict`` (e.g. for resume or eval)."""
    return from_dict(TrainConfig, data)
