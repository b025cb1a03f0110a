"""SIGTERM (what schedulers and Ray send before killing) and Ctrl-C stop a run at the end of the
current step with a checkpoint, and the run resumes from it exactly."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from mtrl.cli import main
from mtrl.config import resolve_config
from mtrl.logging import Sink, read_metrics
from mtrl.rundir import RunInterrupted
from mtrl.trainer import Trainer

REPO_ROOT = Path(__file__).resolve().parents[1]
ARGS = [
    "quickstart",
    "surgery=pcgrad",
    "warmup=10",
    "eval.every=20",
    "eval.episodes=1",
    "logger.every=10",
    "checkpoint.every=40",
    "agent.hidden=[32, 32]",
    "agent.batch_size=16",
    "suite.max_episode_steps=15",  # episodes straddle the stop
    "logger.progress=false",
    "torch_threads=1",
]


class SignalAt(Sink):
    """Sends ``signum`` to this process ``times`` times while the row of ``step`` is written."""

    def __init__(self, step: int, signum: int, times: int = 1) -> None:
        self.step, self.signum, self.times = step, signum, times

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if step == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)
                time.sleep(0.01)  # let the handler run before the next one

    def close(self) -> None:
        pass


def agent_of(run: Path) -> dict[str, Any]:
    return torch.load(run / "checkpoint.pt", weights_only=True)["agent"]


def assert_same(a: Any, b: Any) -> None:
    """Equal nested dicts and lists of tensors and numbers, bit for bit."""
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            assert_same(a[k], b[k])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert_same(x, y)
    elif isinstance(a, torch.Tensor):
        assert torch.equal(a, b)
    else:
        assert a == b


def comparable(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]


def handlers() -> tuple[Any, Any]:
    return signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)


@pytest.mark.parametrize(
    ("signum", "workers"),
    [(signal.SIGTERM, 0), (signal.SIGINT, 2)],
    ids=["sigterm", "ctrl-c-with-workers"],
)
def test_a_signal_stops_with_a_checkpoint_that_resumes_exactly(tmp_path, signum, workers):
    args = [*ARGS, "steps=60", f"num_workers={workers}"]
    straight = Trainer(resolve_config(args[0], [*args[1:], f"out={tmp_path / 'a'}"]))
    straight.run()
    before = handlers()
    stopped = Trainer(
        resolve_config(args[0], [*args[1:], f"out={tmp_path / 'b'}"]), sinks=[SignalAt(30, signum)]
    )
    with pytest.raises(RunInterrupted) as info:
        stopped.run()
    run = stopped.run_dir
    name = signal.Signals(signum).name
    assert str(info.value) == (
        f"stopped by {name} at step 30 with a checkpoint; continue with: mtrl train resume={run}"
    )
    assert info.value.signum == signum
    assert handlers() == before
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == 30
    assert not (run / "summary.json").exists()
    assert main(["train", f"resume={run}"]) == 0
    assert_same(agent_of(straight.run_dir), agent_of(run))
    rows_a = read_metrics(straight.run_dir / "metrics.jsonl")
    rows_b = read_metrics(run / "metrics.jsonl")
    assert comparable(rows_a) == comparable(rows_b)


def test_a_stop_between_log_rows_keeps_the_running_means(tmp_path):
    """SIGTERM at step 25 (rows every 10): the resumed run writes the same train/ rows."""
    marker = tmp_path / "signalled"
    tasks = (
        "[{id: 'mtrl.envs.pointmass:PointMassEnv', name: a}, "
        f"{{id: 'plugin_envs:SignalingPointMass', name: b, kwargs: {{signal_at: 25, marker: "
        f"'{marker}', goal_angle: 180.0}}}}]"
    )
    args = [*ARGS[1:], "steps=40", "suite=classic-control", f"suite.tasks={tasks}"]
    args += ["suite.max_episode_steps=15", "checkpoint.every=0"]
    marker.touch()  # the straight run is not stopped
    straight = Trainer(resolve_config(ARGS[0], [*args, f"out={tmp_path / 'a'}"]))
    straight.run()
    marker.unlink()
    stopped = Trainer(resolve_config(ARGS[0], [*args, f"out={tmp_path / 'b'}"]))
    with pytest.raises(RunInterrupted, match="stopped by SIGTERM at step 25"):
        stopped.run()
    assert main(["train", f"resume={stopped.run_dir}"]) == 0
    assert_same(agent_of(straight.run_dir), agent_of(stopped.run_dir))
    rows_a = comparable(read_metrics(straight.run_dir / "metrics.jsonl"))
    rows_b = comparable(read_metrics(stopped.run_dir / "metrics.jsonl"))
    assert [r["step"] for r in rows_b] == [10, 20, 30, 40]
    assert rows_a == rows_b


def test_a_second_signal_stops_at_once(tmp_path, capfd):
    cfg = resolve_config(ARGS[0], [*ARGS[1:], "steps=60", "checkpoint.every=20", f"out={tmp_path}"])
    before = handlers()
    trainer = Trainer(cfg, sinks=[SignalAt(30, signal.SIGTERM, times=2)])
    with pytest.raises(KeyboardInterrupt):
        trainer.run()
    assert handlers() == before
    err = capfd.readouterr().err
    assert "mtrl: SIGTERM received: stopping after this step with a checkpoint" in err
    assert (
        f"interrupted at step 30; continue from the last checkpoint (step 20) with: "
        f"mtrl train resume={trainer.run_dir}"
    ) in err
    assert torch.load(trainer.run_dir / "checkpoint.pt", weights_only=True)["step"] == 20


def session_members(sid: int) -> list[int]:
    """Pids of live (non-zombie) processes in session ``sid``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(stat.parent.name))
    return pids


def test_sigterm_to_the_process_group_of_a_cli_run_with_workers(tmp_path):
    """As a scheduler does it: every process of the job gets SIGTERM, the rollout workers too."""
    args = [*ARGS, "num_workers=2"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mtrl.cli", "train", *args, "steps=100000", f"out={tmp_path / 'b'}"],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        under_way = any(line.startswith("step 20  success") for line in proc.stdout)
        assert under_way, proc.communicate()[1]  # training with workers reached its first eval
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode != 0, err
    last = err.strip().splitlines()[-1]
    found = re.fullmatch(
        r"mtrl: (?:error: )?stopped by SIGTERM at step (\d+) with a checkpoint; "
        r"continue with: mtrl train resume=(.+)",
        last,
    )
    assert found, err
    step, run = int(found[1]), Path(found[2])
    assert "Traceback" not in err
    time.sleep(0.2)
    assert session_members(proc.pid) == []  # no worker left behind
    assert torch.load(run / "checkpoint.pt", weights_only=True)["step"] == step
    # the checkpoint written on SIGTERM resumes exactly
    end = step + 5
    assert main(["train", f"resume={run}", f"steps={end}"]) == 0
    assert main(["train", *args, f"steps={end}", f"out={tmp_path / 'a'}"]) == 0
    (straight,) = (tmp_path / "a").iterdir()
    assert_same(agent_of(straight), agent_of(run))


def test_sigterm_stops_the_sb3_runner_with_its_models_saved(tmp_path):
    pytest.importorskip("stable_baselines3")
    from mtrl.runners import make_runner

    cfg = resolve_config(
        "quickstart",
        [
            "agent.algorithm=sb3-sac-per-task",
            "surgery=mean",
            "agent.hidden=[32, 32]",
            "agent.batch_size=16",
            "steps=60",
            "warmup=10",
            "eval.every=0",
            "logger.every=10",
            "checkpoint.every=0",
            "logger.progress=false",
            "torch_threads=1",
            f"out={tmp_path}",
        ],
    )
    before = handlers()
    runner = make_runner(cfg, sinks=[SignalAt(20, signal.SIGTERM)])
    with pytest.raises(RunInterrupted) as info:
        runner.run()
    models = runner.run_dir / "models"
    assert str(info.value) == (
        f"stopped by SIGTERM at step 20; the models are saved in {models} "
        "(runs of agent.algorithm=sb3-sac-per-task cannot be resumed)"
    )
    assert handlers() == before
    assert len(list(models.glob("*.zip"))) == 4
    assert [r["step"] for r in read_metrics(runner.run_dir / "metrics.jsonl")] == [10, 20]
