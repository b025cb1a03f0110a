"""Runners by name: what trains on a suite, selected by the config's ``agent.algorithm``.

A runner is built from a resolved config and trains one run into its run directory::

    runner = make_runner(cfg)      # mtsac -> mtrl.trainer.Trainer, sb3-sac-per-task -> ...
    summary = runner.run()         # also written to <run_dir>/summary.json

Entries name their class as ``module:attribute``, so a runner's dependencies (e.g.
Stable-Baselines3) are imported only when it is used; config validation reads the capabilities
of an entry without importing anything.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from mtrl.agents.config import AgentConfig, SurgeryConfig
from mtrl.errors import MtrlError, close_matches

if TYPE_CHECKING:
    from mtrl.config import TrainConfig
    from mtrl.logging import Sink

DEFAULT_ALGORITHM = "mtsac"


class Runner(Protocol):
    """One training run: ``Class(cfg, run_dir=None, resume=False, sinks=())``, then ``run()``."""

    run_dir: Path

    def run(self) -> dict[str, Any]:
        """Train to ``cfg.steps``; return the summary (also written to ``summary.json``)."""
        ...


@dataclass(frozen=True)
class RunnerSpec:
    """A registered runner and what it supports."""

    target: str
    """``module:Class`` of the runner (imported on use)."""
    description: str
    """One line for listings and errors."""
    surgery: bool = True
    """Whether it routes per-task gradients through ``surgery``. If not, ``surgery`` must stay at
    its default and its runs are labelled by the algorithm name instead of the aggregator (run
    directory names, ``summary.json``'s ``aggregator``, ``mtrl compare`` groups)."""
    resume: bool = True
    """Whether ``mtrl train resume=RUN_DIR`` can continue its runs."""
    fixed_agent_fields: tuple[str, ...] = ()
    """``AgentConfig`` fields it does not implement: they must keep their defaults."""
    policy: str = ""
    """``module:function`` loading a finished run's deterministic policy for ``mtrl eval``:
    ``f(path, cfg, device) -> (policy, step)`` with ``policy`` mapping obs [T, obs] to actions."""


RUNNERS: dict[str, RunnerSpec] = {
    "mtsac": RunnerSpec(
        "mtrl.trainer:Trainer",
        "one multi-task SAC (one-hot task id) with gradient surgery",
        policy="mtrl.trainer:load_policy",
    ),
    "sb3-sac-per-task": RunnerSpec(
        "mtrl.baselines.sb3_per_task:SB3PerTaskRunner",
        "one Stable-Baselines3 SAC per task (single-task reference, no surgery)",
        surgery=False,
        resume=False,
        fixed_agent_fields=(
            "multihead",
            "grad_clip",
            "log_std_min",
            "log_std_max",
            "adam_eps",
            "init",
        ),
        policy="mtrl.baselines.sb3_per_task:load_policy",
    ),
}
"""Runners by ``agent.algorithm`` name; ``register_runner`` adds one."""


def register_runner(name: str, spec: RunnerSpec) -> None:
    """Make ``agent.algorithm=<name>`` available."""
    RUNNERS[name] = spec


def runner_spec(name: str) -> RunnerSpec:
    """The registered runner ``name``, or a one-line error listing them."""
    spec = RUNNERS.get(name)
    if spec is None:
        raise MtrlError(
            f"unknown agent.algorithm {name!r}{close_matches(name, RUNNERS)}; "
            f"algorithms: {', '.join(RUNNERS)}"
        )
    return spec


def load_target(target: str) -> Any:
    """The object named by ``module:attribute``."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def method_label(algorithm: str, aggregator: str) -> str:
    """The method a run stands for: its aggregator under a runner with surgery (MT-SAC),
    else the algorithm's name (e.g. ``sb3-sac-per-task``)."""
    spec = RUNNERS.get(algorithm)
    return aggregator if spec is not None and spec.surgery else algorithm


def check_config(cfg: TrainConfig) -> None:
    """Reject settings the chosen algorithm does not implement, with one-line messages."""
    name = cfg.agent.algorithm
    spec = runner_spec(name)
    if not spec.surgery and cfg.surgery != SurgeryConfig():
        raise MtrlError(
            f"agent.algorithm={name} trains without gradient surgery, but surgery is set to "
            f"{cfg.surgery.name!r} (by the experiment or surgery=...); add surgery=mean"
        )
    defaults = AgentConfig()
    for key in spec.fixed_agent_fields:
        default = getattr(defaults, key)
        if getattr(cfg.agent, key) != default:
            raise MtrlError(
                f"agent.{key} does not apply to agent.algorithm={name}; "
                f"leave it at its default {default!r}"
            )


def make_runner(
    cfg: TrainConfig,
    run_dir: str | Path | None = None,
    resume: bool = False,
    sinks: Sequence[Sink] = (),
) -> Runner:
    """The runner of ``cfg.agent.algorithm`` for this config (see ``Trainer`` for the arguments)."""
    name = cfg.agent.algorithm
    spec = runner_spec(name)
    if resume and not spec.resume:
        raise MtrlError(
            f"runs of agent.algorithm={name} cannot be resumed; start a new run "
            "(mtrl train EXPERIMENT ...)"
        )
    return load_target(spec.target)(cfg, run_dir=run_dir, resume=resume, sinks=sinks)
