"""``mtrl sweep``: run a sweep's trials on Ray Tune, locally or on a cluster, then compare them.

Ray Tune schedules the trials (each asks for 1 + ``num_workers`` CPUs and ``gpus_per_trial``
GPUs), retries a trial whose process died up to ``max_failures`` times (the trial resumes from
its own checkpoint, see ``mtrl.sweep.trial``), and reports progress to a console table. The
sweep's state is its run directories: ``resume`` skips the finished ones (a ``summary.json``)
and resumes the others.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mtrl.config import TrainConfig
from mtrl.errors import MtrlError
from mtrl.rundir import SUMMARY
from mtrl.sweep.grid import GridAxis, Trial, check_trials, expand
from mtrl.sweep.trial import ERROR, run_trial

MANIFEST = "sweep.json"
"""What the sweep runs (experiment, overrides, grid, seeds), in the sweep folder."""
TUNE_DIR = ".tune"
"""Ray Tune's own experiment state, hidden so that ``mtrl compare SWEEP/*`` sees runs only."""
COMPARE_KEYS = {"surgery": "aggregator", "agent": "agent_preset"}
"""Grid keys that name a preset, as ``mtrl compare --by`` calls them."""
INSTALL_HINT = "mtrl sweep needs Ray: pip install 'mtrl-bench[sweep]'"


@dataclass
class SweepSpec:
    """One sweep: what to run and where."""

    experiment: str
    overrides: list[str]
    grid: list[GridAxis]
    seeds: list[int]
    out: Path
    name: str
    address: str | None = None
    cpus_per_trial: float | None = None
    gpus_per_trial: float = 0.0
    max_failures: int = 2
    resume: bool = False
    num_cpus: int | None = None
    refresh_s: float = 10.0
    compare: bool = True

    @property
    def folder(self) -> Path:
        return self.out / self.name

    def manifest(self) -> dict[str, Any]:
        return {
            "experiment": self.experiment,
            "overrides": list(self.overrides),
            "grid": [asdict(a) | {"values": list(a.values)} for a in self.grid],
            "seeds": list(self.seeds),
        }


def require_ray() -> None:
    """A one-line error when the optional Ray extra is missing."""
    try:
        import ray  # noqa: F401
        from ray import tune  # noqa: F401
    except ImportError:
        raise MtrlError(INSTALL_HINT) from None


def plan(spec: SweepSpec) -> tuple[list[Trial], dict[str, TrainConfig]]:
    """Every trial of the sweep and its resolved config, each checked (a one-line error names
    the first bad one)."""
    trials = expand(spec.grid, spec.seeds, spec.overrides, spec.name)
    return trials, check_trials(spec.experiment, trials)


def prepare_folder(spec: SweepSpec, trials: list[Trial]) -> list[Trial]:
    """Create the sweep folder with its manifest (or check it on ``resume``); the trials still
    to run."""
    folder = spec.folder
    manifest = spec.manifest()
    path = folder / MANIFEST
    if path.is_file():
        if not spec.resume:
            raise MtrlError(f"sweep {folder} exists: add --resume to continue it, or pick --name")
        saved = json.loads(path.read_text())
        if saved != manifest:
            changed = [k for k in manifest if saved.get(k) != manifest[k]]
            raise MtrlError(
                f"--resume: this sweep's {', '.join(changed)} differ from {path}; "
                "run the same command with --resume, or pick another --name"
            )
    else:
        if spec.resume:
            raise MtrlError(f"--resume: no sweep in {folder} ({MANIFEST} is missing)")
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=2) + "\n")
    todo = [t for t in trials if not (folder / t.name / SUMMARY).is_file()]
    return todo


def trial_resources(spec: SweepSpec, num_workers: int) -> dict[str, float]:
    """What one trial asks Ray for: 1 + its rollout workers CPUs (or ``cpus_per_trial``)."""
    cpus = spec.cpus_per_trial if spec.cpus_per_trial is not None else 1 + num_workers
    resources = {"cpu": float(cpus)}
    if spec.gpus_per_trial:
        resources["gpu"] = float(spec.gpus_per_trial)
    return resources


def run_sweep(spec: SweepSpec) -> int:
    """Run the sweep's unfinished trials on Ray Tune, print the table, compare; the exit status
    is 0 when every trial finished, 1 otherwise."""
    trials, configs = plan(spec)
    require_ray()
    todo = prepare_folder(spec, trials)
    folder = spec.folder
    done = len(trials) - len(todo)
    print(
        f"sweep {folder}: {len(trials)} trials ({done} finished, {len(todo)} to run), "
        f"max {spec.max_failures} retries each"
    )
    if todo:
        _run_on_ray(spec, todo, {t.name: configs[t.name].num_workers for t in todo})
    status = sweep_status(folder, trials)
    print(status_table(status))
    failed = [s for s in status if s["status"] != "finished"]
    if spec.compare and len(failed) < len(trials):
        _compare(spec, trials)
    if failed:
        print(f"{len(failed)} of {len(trials)} trials did not finish; rerun with --resume")
        return 1
    return 0


def _run_on_ray(spec: SweepSpec, todo: list[Trial], workers: dict[str, int]) -> None:
    """Run ``todo`` on Ray Tune; ``workers``: each trial's rollout workers (its CPU request)."""
    import ray
    from ray import tune

    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", str(len(todo)))
    init: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
    if spec.address:
        init["address"] = spec.address
    elif spec.num_cpus:
        init["num_cpus"] = spec.num_cpus
    try:
        ray.init(**init)
    except ConnectionError as exc:
        raise MtrlError(f"cannot reach the Ray cluster at {spec.address}: {exc}") from None
    try:
        folder = spec.folder.resolve()
        space = {
            "trial": tune.grid_search([t.name for t in todo]),
            "experiment": spec.experiment,
            "overrides": {t.name: list(t.overrides) for t in todo},
            "folder": str(folder),
        }
        trainable = tune.with_resources(
            _trainable,
            lambda config: trial_resources(spec, workers[config["trial"]]),
        )
        tuner = tune.Tuner(
            trainable,
            param_space=space,
            run_config=tune.RunConfig(
                name=f"tune-{time.strftime('%Y%m%d-%H%M%S')}",
                storage_path=str(folder / TUNE_DIR),
                failure_config=tune.FailureConfig(max_failures=spec.max_failures),
                verbose=0,
                callbacks=[ProgressTable(todo, spec.refresh_s)],
            ),
        )
        tuner.fit()
    finally:
        ray.shutdown()


def _trainable(config: dict[str, Any]) -> None:
    name = config["trial"]
    run_trial(
        {
            "experiment": config["experiment"],
            "overrides": config["overrides"][name],
            "run_dir": str(Path(config["folder"]) / name),
        }
    )


def sweep_status(folder: Path, trials: list[Trial]) -> list[dict[str, Any]]:
    """Each trial's state from its run directory: finished (summary), failed (error.txt),
    stopped (a checkpoint, no summary) or not started; its last step and success."""
    from mtrl.logging import read_metrics

    rows = []
    for trial in trials:
        run = folder / trial.name
        row: dict[str, Any] = {"trial": trial.name, "step": None, "success": None, "note": ""}
        if (run / SUMMARY).is_file():
            summary = json.loads((run / SUMMARY).read_text())
            row.update(status="finished", step=summary["steps"], success=summary["success_mean"])
        else:
            failed = (run / ERROR).is_file()
            row["status"] = "failed" if failed else "unfinished"
            if failed:
                row["note"] = (run / ERROR).read_text().strip().splitlines()[0][:80]
            metrics = run / "metrics.jsonl"
            if metrics.is_file():
                evals = [r for r in read_metrics(metrics) if "eval/success_mean" in r]
                if evals:
                    row.update(step=evals[-1]["step"], success=evals[-1]["eval/success_mean"])
        rows.append(row)
    return rows


def status_table(rows: list[dict[str, Any]]) -> str:
    """The trials as aligned text: name, status, step, latest success, note."""
    width = max([len(r["trial"]) for r in rows] + [5])
    lines = [f"{'trial':{width}s}  {'status':10s} {'step':>8s} {'success':>8s}"]
    for r in rows:
        step = "" if r["step"] is None else str(r["step"])
        success = "" if r["success"] is None else f"{r['success']:.3f}"
        lines.append(
            f"{r['trial']:{width}s}  {r['status']:10s} {step:>8s} {success:>8s}  {r['note']}"
        )
    return "\n".join(lines)


class ProgressTable:
    """A Ray Tune callback printing one table of the trials when something changed, at most
    every ``refresh_s`` seconds: status (with retries), step and latest success."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        from ray import tune

        class _Table(tune.Callback):
            def __init__(self, todo: list[Trial], refresh_s: float) -> None:
                self.rows = {
                    t.name: {"status": "pending", "step": None, "success": None} for t in todo
                }
                self.refresh_s, self.last, self.changed = refresh_s, 0.0, True

            def _row(self, trial: Any) -> dict[str, Any]:
                return self.rows[trial.config["trial"]]

            def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                retry = f" (retry {trial.num_failures})" if trial.num_failures else ""
                self._row(trial)["status"] = "running" + retry
                self.changed = True

            def on_trial_result(
                self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
            ) -> None:
                row = self._row(trial)
                if "failed" in result:
                    row["status"] = "failed"
                row["step"] = result.get("step", row["step"])
                row["success"] = result.get("success", row["success"])
                self.changed = True

            def on_trial_complete(
                self, iteration: int, trials: list, trial: Any, **info: Any
            ) -> None:
                row = self._row(trial)
                if row["status"] != "failed":
                    row["status"] = "finished"
                self.changed = True

            def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self._row(trial)["status"] = f"died ({trial.num_failures}x)"
                self.changed = True

            def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
                now = time.monotonic()
                if self.changed and now - self.last >= self.refresh_s:
                    self.print()
                    self.last, self.changed = now, False

            def print(self) -> None:
                rows = [{"trial": name, "note": ""} | row for name, row in self.rows.items()]
                running = sum(r["status"].startswith("running") for r in rows)
                print(f"\n[{time.strftime('%H:%M:%S')}] {running} running", flush=True)
                print(status_table(rows), flush=True)

        return _Table(*args, **kwargs)


def _compare(spec: SweepSpec, trials: list[Trial]) -> None:
    """``mtrl compare`` of the finished trials into the sweep folder, grouped by the grid keys."""
    from mtrl.compare import compare
    from mtrl.compare.report import console_text

    keys = [COMPARE_KEYS.get(a.key, a.key) for a in spec.grid] or ["aggregator"]
    by = ",".join(keys)
    finished = [
        str(spec.folder / t.name) for t in trials if (spec.folder / t.name / SUMMARY).is_file()
    ]
    result = compare(finished, spec.folder, by=by)
    print()
    print(console_text(result.comparison))
    print(f"\ncomparison: {spec.folder / 'comparison.md'}")
