"""The run config: one typed dataclass, filled from an experiment YAML plus ``key=value`` overrides.

An experiment file names one suite preset and one agent preset and overrides what it needs::

    suite: mt10               # envs/mt10.yaml (or a path); suite.<key>=... overrides its fields
    agent: mtsac              # agents/mtsac.yaml (or a path); agent.<key>=... overrides its fields
    surgery: pcgrad           # or {name: cagrad, c: 0.9}; surgery.<option>=... on the CLI
    steps: 2000000            # env steps per task
"""

from __future__ import annotations

import copy
import re
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Lt, MinLen
from pydantic import AfterValidator

import mtrl
from mtrl.agents.config import AgentConfig, SurgeryConfig
from mtrl.configtools import (
    from_dict,
    load_yaml,
    parse_override,
    preset_path,
    read_raw,
    set_dotted,
    to_dict,
)
from mtrl.configtypes import AutoBool, Bool, Float, Int, Text, config_class
from mtrl.errors import MtrlError
from mtrl.runners import check_config
from mtrl.surgery import validate_options

ROOT = Path(mtrl.__file__).resolve().parents[1]
AGENT_DIR = ROOT / "agents"
EXPERIMENT_DIR = ROOT / "experiments"


def _check_device(name: str) -> str:
    if not re.fullmatch(r"cpu|cuda(:[0-9]+)?", name):
        raise ValueError("must be cpu, cuda or cuda:<index>")
    return name


Count = Annotated[Int, Ge(1)]
"""An integer >= 1."""
Interval = Annotated[Int, Ge(0)]
"""Env steps per task between two events; 0 turns the periodic event off."""
Seconds = Annotated[Float, Gt(0)]


@config_class
class EvalConfig:
    """Deterministic evaluation on separate env instances (Meta-World success protocol)."""

    every: Interval = 10_000
    """Evaluate every this many env steps per task (0: only at the end)."""
    episodes: Count = 10
    """Episodes per task (50 in the full MT presets)."""
    num_workers: Annotated[Int, Ge(0)] = 0
    """Worker processes stepping the evaluation envs (0: in-process)."""
    envs_per_task: Count = 1
    """Envs per task stepped together, each running its share of the episodes (one policy call
    per step for all of them, spread over the workers); 1 runs a task's episodes one after
    another on one env. More envs use more memory and, with workers, more cores."""
    keep_envs: Bool = True
    """Keep the evaluation envs and their workers from one evaluation to the next, reseeded for
    each as new ones (the same results without starting them each time); false builds them for
    each evaluation and frees their memory in between (MT10 at envs_per_task=10: about 3 GB)."""
    end_on_success: Bool = True
    """End each evaluation episode at its first success, as Meta-World's own evaluation does:
    the success rates are the same, the returns are up to the success, and solved tasks cost a
    fraction of the env steps. False runs every episode to its time limit."""


@config_class
class LoggerConfig:
    """Where metrics go."""

    every: Count = 1_000
    """Record training metrics every this many env steps per task."""
    wandb: Literal["online", "offline", "off"] = "off"
    """Weights & Biases mode."""
    project: Annotated[Text, MinLen(1)] = "mtrl"
    """W&B project."""
    entity: Text | None = None
    """W&B entity (team or user); None for the default."""
    wandb_timeout: Seconds = 30.0
    """Seconds an online W&B start may take before the run logs offline instead."""
    tensorboard: Bool = False
    """Also write TensorBoard event files to ``<run_dir>/tensorboard`` (needs ``tensorboard``)."""
    progress: Bool = True
    """Show a progress bar on the console (the one-line summary at each evaluation is always
    printed)."""


@config_class
class CheckpointConfig:
    """When and what to checkpoint."""

    every: Interval = 50_000
    """Checkpoint every this many env steps per task (0: only at the end)."""
    replay: Bool = True
    """Include the replay buffer (needed for an exact resume; can be large)."""


@config_class
class TrainConfig:
    """Everything a run needs; saved resolved as ``config.yaml`` in its run directory."""

    suite: Annotated[Text, MinLen(1)] = "cheap4"
    """Suite preset name (``mtrl envs`` lists them) or a YAML path."""
    suite_overrides: dict[str, Any] = field(default_factory=dict)
    """Fields of the suite config to override (``suite.<key>=value`` on the CLI)."""
    agent_preset: Annotated[Text, MinLen(1)] = "mtsac"
    """Agent preset name (``agents/<name>.yaml``) or a YAML path (``agent=...`` on the CLI)."""
    agent: AgentConfig = field(default_factory=AgentConfig)
    """Agent hyperparameters: the preset plus ``agent.<key>=value`` overrides."""
    surgery: SurgeryConfig = field(default_factory=SurgeryConfig)
    """Gradient surgery: ``surgery=<name>`` and ``surgery.<option>=value`` on the CLI."""
    name: Text = ""
    """Experiment name (groups seeds); defaults to the experiment file's name."""
    seed: Annotated[Int, Ge(0), Lt(2**32)] = 0
    """Run seed: networks, envs, goals, replay sampling, surgery draws."""
    steps: Count = 20_000
    """Env steps per task."""
    warmup: Annotated[Int, Ge(0)] = 1_500
    """Env steps per task with uniformly random actions before the first update."""
    utd: Count = 1
    """Gradient updates per vector step after the warm-up."""
    buffer_size: Count = 100_000
    """Replay capacity per task (transitions); at least ``agent.batch_size``."""
    device: Annotated[Text, AfterValidator(_check_device)] = "cpu"
    """cpu, cuda or cuda:<index>."""
    num_workers: Annotated[Int, Ge(0)] = 0
    """Rollout worker processes (0: step the envs in the training process)."""
    overlap: Bool = True
    """Run each vector step's gradient updates while the worker processes step the envs: the
    updates at step t sample the replay before transition t is added. False: step, add, then
    update (the textbook order). Either way a run does not depend on ``num_workers``."""
    finite_checks: Literal["auto", "every_update", "deferred"] = "auto"
    """When NaN/inf losses and gradients stop training: ``every_update`` (at once, one host
    sync per update), ``deferred`` (flags kept on the device, checked at every log point and
    before every checkpoint, so no checkpoint follows a non-finite update), ``auto`` (deferred
    on a GPU, every update on the CPU)."""
    compile: AutoBool = "auto"
    """Capture the whole gradient update in a CUDA graph and replay it (no per-kernel launch
    cost): ``true`` (needs device=cuda; where the aggregator solves on the host or
    finite_checks=every_update, one warning line and the update runs eagerly), ``false``, or
    ``auto`` (on with device=cuda where nothing blocks it, off on the CPU)."""
    compile_solvers: AutoBool = "auto"
    """In an update captured in a CUDA graph (``compile``), also compile the aggregator's
    device solver with torch.compile, which fuses its small ops into fewer kernels: ``auto``
    (the solvers a GPU measured faster compiled: CAGrad's, MGDA's, UPGrad's and PCGrad's
    projections after its random draws; on an H200 3.6, 4.3, 4.2 and 1.79 ms per update instead
    of 5.7, 5.9, 6.2 and 1.87 at T = 10, BENCHMARKS.md), ``true`` (every device solver: also
    DualProj's; needs device=cuda and compile on) or ``false``. It compiles for seconds in the
    first update (15 s for MGDA on the H200, cached on disk for later runs); a failed compile
    warns once and the solver runs uncompiled."""
    fused_solvers: AutoBool = "auto"
    """In an update captured in a CUDA graph (``compile``), run the interior-point solvers as
    Triton kernels (a CAGrad solve two launches, an MGDA, UPGrad or DualProj solve one)
    instead of about 44 small kernels per interior-point step and more around them
    (``fused_ip``; the ``triton`` package comes with torch's CUDA builds): ``auto`` (CAGrad's,
    up to 16 tasks, where an H200 measured it faster: 2.85 ms per update fused and compiled
    instead of 3.56 compiled at T = 10, with the steps alone fused; at T = 50 the kernel was
    slower), ``true`` (CAGrad's, MGDA's, UPGrad's and DualProj's at any T, and the Jacobi
    rotations of IMTL-G, ConFIG and Aligned-MTL, one kernel per solve; warning where triton is
    missing; needs device=cuda and compile on) or ``false``. Before the capture the kernels
    are checked against the torch solver on the run's device (``solver_check``); where they
    disagree a warning line says so and the torch solver runs."""
    torch_threads: Annotated[Int, Ge(0)] = 0
    """Torch intra-op threads (0: torch's default); 1 suits several runs side by side."""
    step_timeout: Seconds = 120.0
    """Seconds the envs may take to answer one step or reset before the run stops with an
    error naming the task (an env that hangs)."""
    out: Annotated[Text, MinLen(1)] = "runs"
    """Root folder of run directories."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    def __post_init__(self) -> None:
        if self.compile is True and self.device == "cpu":
            raise ValueError(
                "compile=true needs device=cuda (it captures the update in a CUDA graph)"
            )
        for key, verb in (("compile_solvers", "compiles"), ("fused_solvers", "fuses")):
            if getattr(self, key) is True and (self.device == "cpu" or self.compile is False):
                raise ValueError(
                    f"{key}=true needs device=cuda and compile on (it {verb} the solvers of an "
                    "update captured in a CUDA graph)"
                )
        if self.buffer_size < self.agent.batch_size:
            raise ValueError(
                f"buffer_size={self.buffer_size} is below agent.batch_size="
                f"{self.agent.batch_size}: each task's replay must hold at least one batch"
            )


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
    """The surgery section with its aggregator's options checked and their defaults filled in."""
    fields = {"name", "networks", "options"}
    base = {k: v for k, v in section.items() if k in fields}
    options = base.pop("options", None) or {}
    if not isinstance(options, dict):
        raise MtrlError(f"surgery.options must be a mapping, got {options!r}")
    options = {**options, **{k: v for k, v in section.items() if k not in fields}}
    surgery = from_dict(SurgeryConfig, base, "surgery")
    surgery.options = validate_options(surgery.name, options, "surgery")
    return surgery


def resolve_config(
    experiment: str | Path | dict[str, Any] | None, overrides: list[str] | None = None
) -> TrainConfig:
    """Build the run config from an experiment (name, path or dict) and ``key=value`` strings.

    Everything is checked here, before a run directory exists: types and ranges of every key,
    the aggregator's options, the suite's fields, and what the algorithm supports.
    """
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
    resolved["suite_overrides"] = suite_overrides(str(resolved["suite"]), suite)
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


def suite_overrides(suite: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """``overrides`` of suite fields, read by their types and checked against the suite preset."""
    from mtrl.envs.config import SuiteConfig, load_suite_config

    values = read_raw(SuiteConfig, overrides)
    load_suite_config(suite, values)  # raises a one-line error naming suite.<key>
    return values


def validate(cfg: TrainConfig) -> None:
    """Checks that need more than one section: what the chosen ``agent.algorithm`` supports."""
    check_config(cfg)


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """The resolved config as plain data (YAML/JSON ready)."""
    return to_dict(cfg)


def config_from_dict(data: dict[str, Any]) -> TrainConfig:
    """Rebuild a resolved config saved by ``config_to_dict`` (e.g. for resume or eval).

    Types and ranges are checked; the suite preset and the aggregator are not looked up, so that
    old runs stay readable (``mtrl compare``) after a preset moved."""
    return from_dict(TrainConfig, data)
