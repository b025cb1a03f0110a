"""``mtrl sweep`` on a local Ray with 2 CPUs: a grid completes and is compared, a killed trial is
retried and resumes from its checkpoint, ``--resume`` finishes only the missing trials."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtrl.cli import main

pytest.importorskip("ray", reason="the sweep extra (pip install 'mtrl-bench[sweep]')")

TINY = [
    "warmup=20",
    "eval.episodes=1",
    "agent.hidden=[16,16]",
    "agent.batch_size=16",
    "logger.progress=false",
    "torch_threads=1",
]


def sweep_args(out: Path, steps: int, *extra: str) -> list[str]:
    return [
        "sweep",
        "quickstart",
        *TINY,
        f"steps={steps}",
        f"eval.every={steps // 2}",
        f"logger.every={steps // 4}",
        f"checkpoint.every={steps // 4}",
        "--out",
        str(out),
        "--num-cpus",
        "2",
        "--refresh",
        "2",
        *extra,
    ]


def finished(folder: Path) -> list[Path]:
    return sorted(p.parent for p in folder.glob("*/summary.json"))


def test_a_grid_runs_every_trial_and_compares_them(tmp_path, capsys):
    args = sweep_args(tmp_path, 40, "--grid", "surgery=mean,pcgrad", "--seeds", "0-1")
    assert main([*args, "--name", "grid"]) == 0
    folder = tmp_path / "grid"
    runs = finished(folder)
    assert [r.name for r in runs] == [
        "surgery=mean__seed0",
        "surgery=mean__seed1",
        "surgery=pcgrad__seed0",
        "surgery=pcgrad__seed1",
    ]
    for run in runs:  # ordinary run directories, named (W&B group) by the sweep
        summary = json.loads((run / "summary.json").read_text())
        assert summary["steps"] == 40 and summary["experiment"] == "grid"
        assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
    report = (folder / "comparison.md").read_text()
    assert "pcgrad" in report and "mean" in report
    out = capsys.readouterr().out
    assert "4 trials (0 finished, 4 to run)" in out
    assert "surgery=pcgrad__seed1  finished" in out
    # mtrl compare works on the sweep's runs unchanged
    assert main(["compare", str(folder / "*"), "--out", str(tmp_path / "cmp")]) == 0


def _start(args: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mtrl.cli", *args],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _wait_for(predicate, timeout: float, what: str, proc: subprocess.Popen, log: Path):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        if proc.poll() is not None:
            pytest.fail(f"sweep ended before {what}:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    pytest.fail(f"timed out waiting for {what}:\n{log.read_text()[-3000:]}")


def test_a_killed_trial_is_retried_and_resumes_from_its_checkpoint(tmp_path):
    log = tmp_path / "sweep.log"
    proc = _start(sweep_args(tmp_path, 400, "--max-failures", "2"), log)
    run = tmp_path / "quickstart" / "seed0"
    _wait_for(lambda: (run / "checkpoint.pt").is_file(), 180, "a checkpoint", proc, log)
    first = (run / "trial.log").read_text().splitlines()[0]
    pid = int(first.split("pid ")[1].split("]")[0])
    os.kill(pid, signal.SIGKILL)
    assert proc.wait(timeout=300) == 0, log.read_text()[-3000:]
    trial_log = (run / "trial.log").read_text()
    assert f"[trial pid {pid}] starting" in trial_log and "] resuming" in trial_log
    assert "resuming from step " in trial_log  # the trainer continued its own checkpoint
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == 400  # one row per log point, no restart
    assert json.loads((run / "summary.json").read_text())["steps"] == 400


def test_resume_finishes_only_the_missing_trials(tmp_path, capsys):
    log = tmp_path / "sweep.log"
    args = sweep_args(tmp_path, 200, "--seeds", "0-1", "--cpus-per-trial", "2")
    proc = _start(args, log)  # 2 CPUs, 2 per trial: the trials run one after the other
    folder = tmp_path / "quickstart"
    _wait_for(lambda: finished(folder), 240, "a finished trial", proc, log)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep dies with everything it started
    proc.wait(timeout=60)
    (done,) = finished(folder)
    stamp = (done / "summary.json").stat().st_mtime_ns
    capsys.readouterr()
    assert main([*args, "--resume"]) == 0
    out = capsys.readouterr().out
    assert "2 trials (1 finished, 1 to run)" in out
    assert [r.name for r in finished(folder)] == ["seed0", "seed1"]
    assert (done / "summary.json").stat().st_mtime_ns == stamp  # not run again


def test_without_ray_the_sweep_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if the extra were not installed
    assert main(sweep_args(tmp_path, 40)) == 2
    err = capsys.readouterr().err.strip()
    assert err == "mtrl: error: mtrl sweep needs Ray: pip install 'mtrl-bench[sweep]'"
    assert not (tmp_path / "quickstart").exists()
