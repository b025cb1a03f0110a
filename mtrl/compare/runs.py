"""Find run directories, read what they hold, and group them into the methods being compared.

Everything is read from local files: ``config.yaml``, ``metrics.jsonl`` and, once a run has
finished, ``summary.json``. A run that is still going has no summary yet; its latest evaluation
row stands in for the final one.
"""

from __future__ import annotations

import glob
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtrl.config import config_to_dict
from mtrl.errors import MtrlError, close_matches
from mtrl.logging import read_metrics
from mtrl.rundir import CONFIG, METRICS, SUMMARY, TENSORBOARD, read_run_config
from mtrl.runners import DEFAULT_ALGORITHM, method_label

SUCCESS = "eval/success_mean"
TASK_SUCCESS = "eval/success/"
UNSET = "unset"
#: ``--by`` shorthands for config keys (``aggregator`` is the method: see ``run_method``).
BY_ALIASES = {"aggregator": "surgery.name", "experiment": "name"}


@dataclass
class Run:
    """One run directory: its resolved config, metrics rows and (when finished) summary."""

    path: Path
    config: dict[str, Any]
    rows: list[dict[str, Any]]
    summary: dict[str, Any] | None = None
    evals: list[dict[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        self.evals = sorted((r for r in self.rows if r.get(SUCCESS) is not None), key=_step)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def suite(self) -> str:
        """The suite's name (a preset name, or a YAML file's stem)."""
        return Path(str(self.config["suite"])).stem

    @property
    def seed(self) -> int:
        return int(self.config["seed"])

    @property
    def aggregator(self) -> str:
        """The method: the aggregator of an MT-SAC run, else its algorithm (``run_method``)."""
        return run_method(self.config)

    @property
    def finished(self) -> bool:
        """True once ``summary.json`` was written (the run reached its final step)."""
        return self.summary is not None

    @property
    def last_step(self) -> int:
        """Env steps per task of the latest evaluation."""
        return _step(self.evals[-1])

    @property
    def tasks(self) -> list[str]:
        """Task names, in suite order, from the latest evaluation row."""
        return [k[len(TASK_SUCCESS) :] for k in self.evals[-1] if k.startswith(TASK_SUCCESS)]

    def eval_at(self, step: int) -> dict[str, Any]:
        """The latest evaluation row at or before ``step``."""
        rows = [r for r in self.evals if _step(r) <= step]
        if not rows:
            raise MtrlError(f"run {self.name} has no evaluation at or before step {step}")
        return rows[-1]

    def series(self, key: str, until: int) -> dict[int, float]:
        """``{step: value}`` of a metric over the rows up to step ``until``."""
        return {
            _step(r): float(r[key])
            for r in self.rows
            if r.get(key) is not None and _step(r) <= until
        }

    def seconds_per_env_step(self) -> float | None:
        """Wall-clock seconds per env step (all tasks): from summary.json once finished, else
        from the latest ``perf/env_steps_per_s``; None when neither exists yet."""
        if self.summary is not None and self.summary.get("wall_s") and self.summary.get("steps"):
            tasks = len(self.summary.get("success", {})) or len(self.tasks)
            return float(self.summary["wall_s"]) / (int(self.summary["steps"]) * tasks)
        rates = [r["perf/env_steps_per_s"] for r in self.rows if r.get("perf/env_steps_per_s")]
        return 1.0 / float(rates[-1]) if rates else None


def _step(row: dict[str, Any]) -> int:
    return int(row.get("step", 0))


#: Folders a recursive search skips: logger output inside runs, and W&B files of ``compare``.
SKIPPED_FOLDERS = frozenset({"wandb", TENSORBOARD})


def is_run_dir(path: Path) -> bool:
    """True for a folder holding a run's ``config.yaml``."""
    return (path / CONFIG).is_file()


def find_runs(folder: Path) -> list[Path]:
    """Run directories under ``folder``, sorted by path: not below a run directory found, nor in
    ``wandb/``, ``tensorboard/`` or hidden folders. Symlinked folders are followed once."""
    found: list[Path] = []
    seen: set[Path] = set()

    def walk(path: Path) -> None:
        real = path.resolve()
        if real in seen:  # a symlink loop, or two links to one folder
            return
        seen.add(real)
        try:
            children = sorted(p for p in path.iterdir() if p.is_dir())
        except OSError:  # unreadable: skip it, as ``tensorboard --logdir`` does
            return
        for child in children:
            if is_run_dir(child):
                found.append(child)
            elif child.name not in SKIPPED_FOLDERS and not child.name.startswith("."):
                walk(child)

    walk(folder)
    return found


def _runs_of(path: Path) -> list[Path]:
    """The run directories one path stands for: itself, or those found below it."""
    if is_run_dir(path):
        return [path]
    if not path.is_dir():
        raise MtrlError(f"{path} is not a run directory (no {CONFIG})")
    found = find_runs(path)
    if not found:
        raise MtrlError(f"{path} holds no run directories (no {CONFIG} in it or below it)")
    return found


def expand_paths(patterns: list[str]) -> list[Path]:
    """Run directories named by paths, folders of runs (searched recursively, like
    ``tensorboard --logdir``) or glob patterns; in argument order, each argument's runs sorted by
    path, a run reached twice counted once.

    A pattern that matches nothing, a file that is not a run directory or a folder holding no
    runs is a one-line error. Files a glob pattern matches are skipped (``sweep/*`` also
    matches a sweep's comparison.md).
    """
    paths: list[Path] = []
    seen: set[Path] = set()
    for pattern in patterns:
        magic = glob.has_magic(pattern)
        matches = sorted(glob.glob(pattern)) if magic else [pattern]
        if not matches or not Path(matches[0]).exists():
            raise MtrlError(f"{pattern!r} matches no file or directory")
        if magic:
            matches = [m for m in matches if Path(m).is_dir()]
            if not matches:
                raise MtrlError(f"{pattern!r} matches no run directory")
        for match in matches:
            for path in _runs_of(Path(match)):
                if path.resolve() not in seen:
                    seen.add(path.resolve())
                    paths.append(path)
    return paths


def load_run(path: str | Path) -> Run:
    """Read one run directory (a missing metrics file reads as no rows yet)."""
    path = Path(path)
    config = config_to_dict(read_run_config(path))
    metrics = path / METRICS
    rows = read_metrics(metrics) if metrics.is_file() else []
    summary_path = path / SUMMARY
    summary = None
    if summary_path.is_file():
        try:
            summary = json.loads(summary_path.read_text())
        except json.JSONDecodeError:
            summary = None  # being written right now: treat the run as still going
    return Run(path, config, rows, summary)


def run_method(config: dict[str, Any]) -> str:
    """What a run's group is called by default: its aggregator under MT-SAC, or the name of an
    algorithm without surgery (e.g. ``sb3-sac-per-task``), as in its run directory's name."""
    algorithm = str(config.get("agent", {}).get("algorithm", DEFAULT_ALGORITHM))
    return method_label(algorithm, str(config["surgery"]["name"]))


def config_value(config: dict[str, Any], key: str) -> tuple[bool, Any]:
    """(found, value) of a dotted config key; ``surgery.X`` also finds ``surgery.options.X``
    and ``suite.X`` finds ``suite_overrides.X``, as on the ``mtrl train`` command line;
    ``aggregator`` is the run's method (``run_method``)."""
    if key == "aggregator":
        return True, run_method(config)
    key = BY_ALIASES.get(key, key)
    candidates = [key]
    head, _, rest = key.partition(".")
    if head == "surgery" and rest:
        candidates.append(f"surgery.options.{rest}")
    if head == "suite" and rest:
        candidates.append(f"suite_overrides.{rest}")
    for candidate in candidates:
        node: Any = config
        for part in candidate.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return True, node
    return False, None


def _label(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _dotted_keys(data: dict[str, Any], prefix: str = "") -> list[str]:
    keys = []
    for k, v in data.items():
        keys.append(prefix + k)
        if isinstance(v, dict):
            keys.extend(_dotted_keys(v, f"{prefix}{k}."))
    return keys


def group_runs(runs: list[Run], by: str) -> dict[str, list[Run]]:
    """Runs grouped by a config key: ``aggregator`` (the method, ``run_method``), ``experiment``
    (the experiment name) or any dotted key, or by several joined with commas (``surgery.c,seed``
    gives one group per combination); groups in first-seen order."""
    keys = [k.strip() for k in by.split(",") if k.strip()]
    if not keys:
        raise MtrlError(f"--by {by!r} names no config key")
    labels = [_labels(runs, key) for key in keys]
    groups: dict[str, list[Run]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(", ".join(parts[i] for parts in labels), []).append(run)
    return groups


def _labels(runs: list[Run], by: str) -> list[str]:
    """Each run's group label for one key."""
    found = [config_value(r.config, by) for r in runs]
    if not any(ok for ok, _ in found):
        keys = [*BY_ALIASES, *_dotted_keys(runs[0].config)]
        raise MtrlError(f"no run has the config key {by!r}{close_matches(by, keys)}")
    labels = []
    for ok, value in found:
        text = _label(value) if ok else UNSET
        if by == "experiment" and not text:
            text = "(unnamed)"
        labels.append(text if by in BY_ALIASES else f"{by}={text}")
    return labels


def check_same_suite(runs: list[Run]) -> None:
    """One suite (and one task list) for all runs, or a one-line error naming them."""
    suites = Counter(r.suite for r in runs)
    if len(suites) > 1:
        listed = ", ".join(f"{s} ({n} run{'s' * (n > 1)})" for s, n in suites.items())
        raise MtrlError(f"runs are on different suites: {listed}; compare one suite at a time")
    tasks = Counter(tuple(r.tasks) for r in runs)
    if len(tasks) > 1:
        listed = "; ".join(
            f"{n} run{'s' * (n > 1)} with {len(t)} tasks ({', '.join(t[:3])}...)"
            for t, n in tasks.items()
        )
        raise MtrlError(f"runs of suite {runs[0].suite} have different tasks: {listed}")


def baseline_label(groups: dict[str, list[Run]]) -> str | None:
    """The group whose runs all use ``surgery=mean`` (plain MT-SAC), if exactly one does."""
    plain = [label for label, runs in groups.items() if all(r.aggregator == "mean" for r in runs)]
    return plain[0] if len(plain) == 1 else None
