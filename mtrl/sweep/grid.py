"""A sweep's trials: every combination of the grid values and the seeds, checked up front.

Pure functions, no Ray: parsing ``--grid KEY=V1,V2`` and ``--seeds 0-9``, expanding them into
trials (overrides and a directory name each), and resolving every trial's config before anything
starts, so a bad key or value is one line and no trial is launched.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass

from mtrl.config import TrainConfig, resolve_config
from mtrl.errors import MtrlError

RESERVED = ("seed", "name", "out", "resume")
"""Keys the sweep sets itself for every trial."""


@dataclass(frozen=True)
class GridAxis:
    """One ``--grid KEY=V1,V2,...``: a config key and the values (as override text) it takes."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Trial:
    """One run of the sweep: its overrides beyond the experiment's, and its directory name."""

    name: str
    point: tuple[tuple[str, str], ...]
    """(key, value) of each grid axis, in the order of the axes."""
    seed: int
    overrides: tuple[str, ...]
    """Every override of this trial: the sweep's shared ones, its grid point, name, seed."""


def split_values(text: str) -> list[str]:
    """Split ``V1,V2,...`` at the commas outside brackets and quotes (``[256,256],[400,400]``
    is two values)."""
    values, depth, quote, current = [], 0, "", []
    for char in text:
        if quote:
            quote = "" if char == quote else quote
        elif char in "\"'":
            quote = char
        elif char in "[{(":
            depth += 1
        elif char in "]})":
            depth -= 1
        elif char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    values.append("".join(current).strip())
    return values


def parse_grid(text: str) -> GridAxis:
    """``KEY=V1,V2,...`` as a grid axis; an empty value or key, or a repeated value, is an error."""
    if "=" not in text:
        raise MtrlError(f"--grid {text!r} is not of the form KEY=V1,V2,...")
    key, raw = (part.strip() for part in text.split("=", 1))
    if not key:
        raise MtrlError(f"--grid {text!r} has an empty key")
    if key in RESERVED:
        hint = " (use --seeds)" if key == "seed" else ""
        raise MtrlError(f"--grid {key}: the sweep sets {key} itself{hint}")
    values = split_values(raw)
    if any(not v for v in values):
        raise MtrlError(f"--grid {text!r} has an empty value")
    if len(set(values)) != len(values):
        raise MtrlError(f"--grid {text!r} repeats a value")
    return GridAxis(key, tuple(values))


def parse_seeds(text: str) -> list[int]:
    """``0-9``, ``0,3,7`` or a mix (``0-4,9``) as a sorted list of distinct seeds."""
    seeds: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not match:
            raise MtrlError(f"--seeds {text!r}: expected seeds like 0-9 or 0,3,7")
        first, last = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if last < first:
            raise MtrlError(f"--seeds {text!r}: {part.strip()} runs backwards")
        seeds.update(range(first, last + 1))
    return sorted(seeds)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "x"


def trial_name(point: tuple[tuple[str, str], ...], seed: int) -> str:
    """A readable, unique directory name: ``surgery=pcgrad__agent.tau=0.01__seed3``."""
    parts = [f"{_slug(k)}={_slug(v)}" for k, v in point] + [f"seed{seed}"]
    name = "__".join(parts)
    if len(name) > 120:  # long list values: keep it short and unique
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[:100]}__{digest}"
    return name


def expand(axes: list[GridAxis], seeds: list[int], overrides: list[str], sweep: str) -> list[Trial]:
    """Every combination of the axes' values and the seeds, as trials (seeds vary fastest)."""
    keys = [a.key for a in axes]
    if len(set(keys)) != len(keys):
        raise MtrlError(f"--grid repeats a key: {', '.join(keys)}")
    shared = [o for o in overrides if o.split("=", 1)[0].strip() not in keys]
    trials = []
    for values in itertools.product(*(a.values for a in axes)):
        point = tuple(zip(keys, values, strict=True))
        for seed in seeds:
            own = [f"{k}={v}" for k, v in point] + [f"name={sweep}", f"seed={seed}"]
            trials.append(Trial(trial_name(point, seed), point, seed, (*shared, *own)))
    return trials


def check_trials(experiment: str, trials: list[Trial]) -> dict[str, TrainConfig]:
    """Resolve every trial's config (types, ranges, aggregator options); the first bad one is a
    one-line error naming the trial's grid point."""
    configs = {}
    for trial in trials:
        try:
            configs[trial.name] = resolve_config(experiment, list(trial.overrides))
        except MtrlError as exc:
            where = ", ".join(f"{k}={v}" for k, v in trial.point) or f"seed={trial.seed}"
            raise MtrlError(f"trial {where}: {exc}") from None
    return configs
