"""The typed suite config and the YAML presets under ``envs/``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt

import mtrl
from mtrl.configtools import from_dict, list_presets, load_yaml, preset_path, set_dotted
from mtrl.configtypes import Float, Int, Text, config_class
from mtrl.errors import MtrlError

PRESET_DIR = Path(mtrl.__file__).resolve().parents[1] / "envs"
"""Where suite presets live: ``envs/<name>.yaml`` at the repository root."""


@config_class
class TaskConfig:
    """One task of a suite."""

    id: Text
    """Meta-World env name (``reach-v3``), gymnasium id (``Pendulum-v1``) or ``module:Class``."""
    name: Text | None = None
    """Name shown in logs; defaults to the id (the class name for ``module:Class``)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments for the env constructor (gym kind only)."""


@config_class
class SuiteConfig:
    """A task suite: which tasks, how long an episode lasts, and kind-specific settings."""

    kind: Text = "metaworld"
    """Where the tasks come from: metaworld, gym or cheap."""
    name: Text = ""
    """Suite name; defaults to the preset's file name."""
    description: Text = ""
    """One line shown by ``list_suites``."""
    benchmark: Text | None = None
    """metaworld: MT10, MT25, MT50, or MT1 (each listed task with its own 50 goals)."""
    tasks: list[TaskConfig | Text] = field(default_factory=list)
    """Tasks in order; a plain string is short for ``{id: <string>}``. metaworld: a subset of the
    benchmark (empty = all of it); gym: required; cheap: unused."""
    num_tasks: Annotated[Int, Ge(1)] | None = None
    """cheap: how many point-mass tasks (goal directions evenly spread, every other one inverted)."""
    reward_scales: list[Annotated[Float, Gt(0)]] = field(default_factory=list)
    """cheap: reward multiplier of each task in order (tasks past the end of the list keep 1.0).
    A few tasks with much larger rewards dominate the mean gradient of a shared network."""
    max_episode_steps: Annotated[Int, Ge(1)] | None = None
    """Truncate after this many steps (metaworld 500, cheap 50, gym: the registered limit)."""
    reward_version: Literal["v2", "v1"] | None = None
    """metaworld: v2 (default) or v1."""

    def task_configs(self) -> list[TaskConfig]:
        """The tasks with plain strings turned into ``TaskConfig``s."""
        return [TaskConfig(id=t) if isinstance(t, str) else t for t in self.tasks]


def list_suites() -> dict[str, str]:
    """Preset names under ``envs/`` with their one-line descriptions."""
    return list_presets(PRESET_DIR)


def load_suite_config(name_or_path: str, overrides: Mapping[str, Any] | None = None) -> SuiteConfig:
    """Read a preset name or YAML path into a ``SuiteConfig``; ``overrides`` keys may be dotted."""
    path = preset_path(name_or_path, PRESET_DIR, "suite")
    data = load_yaml(path)
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    data.setdefault("name", path.stem)
    try:
        return from_dict(SuiteConfig, data, "suite")
    except MtrlError as exc:
        raise MtrlError(f"{exc} (suite preset {path})") from None


def reject_fields(cfg: SuiteConfig, *names: str) -> None:
    """Raise if any of ``names`` is set: those keys mean nothing for ``cfg.kind``."""
    for name in names:
        if getattr(cfg, name) not in (None, [], ""):
            raise MtrlError(f"suite {cfg.name!r}: {name!r} does not apply to kind {cfg.kind!r}")


def unique_names(names: list[str], suite: str) -> None:
    """Raise if two tasks share a name."""
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise MtrlError(
                f"suite {suite!r}: task name {name!r} appears twice; give each task a `name:`"
            )
        seen.add(name)
