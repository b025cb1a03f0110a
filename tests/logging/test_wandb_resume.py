"""W&B across a resume (one run id, no row sent twice) and the bounded online fallback.

Real wandb, offline or against a local server that never answers; the offline files are read back
with W&B's own inspector.
"""

import json
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from wandb_helpers import NO_SERVER, isolate_wandb, wandb_records

from mtrl.config import resolve_config
from mtrl.logging.wandb_sink import STATE, WandbSink
from mtrl.rundir import open_sinks

IMAGE = np.zeros((4, 4, 3), dtype=np.uint8)


@pytest.fixture
def wandb_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """W&B inside tmp_path and away from the network; torn down after the test."""
    import wandb

    isolate_wandb(monkeypatch, tmp_path)
    yield
    wandb.teardown()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A W&B address that takes connections and never answers: a network that stalls."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(64)  # never accepted: the kernel completes the handshakes, nobody replies
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def logged(offline_run: Path) -> tuple[str, bool, list[int], list[int]]:
    """Run id, whether it resumes, env steps of the rows and of the images."""
    found = wandb_records(offline_run)
    (run,) = [r["run"] for r in found if r["type"] == "run"]
    history = [r["history"]["item"] for r in found if r["type"] == "history"]
    rows = [h["env_steps"] for h in history if "loss" in h]
    images = [h["env_steps"] for h in history if "cosine._type" in h]
    return run["run_id"], run.get("resume", False), rows, images


def resumed_sink(run_dir: Path, checkpoint_step: int) -> WandbSink:
    """The W&B sink as the trainer opens it when resuming from a checkpoint."""
    cfg = resolve_config("quickstart", ["logger.wandb=offline", "logger.progress=false"])
    sinks = open_sinks(cfg, run_dir, "cheap4", keep_until=checkpoint_step)
    (sink,) = [s for s in sinks if isinstance(s, WandbSink)]
    return sink


def test_a_resumed_run_continues_its_wandb_run_without_sending_a_row_twice(
    tmp_path: Path, wandb_env: None
) -> None:
    run_dir = tmp_path / "run"
    first = WandbSink("offline", run_dir, project="mtrl", name="run")
    for step in (50, 100, 150):
        first.write(step, {"loss": step / 1000})
    first.write_images(100, {"cosine": IMAGE})
    first.close()  # stopped after the row at 150, its last checkpoint at 100

    second = resumed_sink(run_dir, checkpoint_step=100)
    for step in (150, 200, 250):  # 150 is re-generated: it was sent before the stop
        second.write(step, {"loss": step / 1000})
        if step in (150, 200):  # the image at 150 was not sent before the stop
            second.write_images(step, {"cosine": IMAGE})
    second.close()

    run_id = first.state["id"]
    assert second.state == {"id": run_id, "step": 250, "image_step": 200}
    assert logged(Path(first.run.settings.sync_dir)) == (run_id, True, [50, 100, 150], [100])
    assert logged(Path(second.run.settings.sync_dir)) == (run_id, True, [200, 250], [150, 200])


# a run killed with -9 after its rows at 50 and 100 (W&B itself loses what it had not written)
KILLED_RUN = """
import os, signal, sys
from mtrl.logging.wandb_sink import WandbSink
sink = WandbSink("offline", sys.argv[1], project="mtrl")
sink.write(50, {"loss": 0.05})
sink.write(100, {"loss": 0.1})
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_run_killed_with_sigkill_still_knows_its_id_and_last_step(
    tmp_path: Path, wandb_env: None
) -> None:
    run_dir = tmp_path / "run"
    killed = subprocess.run([sys.executable, "-c", KILLED_RUN, str(run_dir)], timeout=120)
    assert killed.returncode == -9
    state = json.loads((run_dir / STATE).read_text())
    assert state["step"] == 100 and not (run_dir / (STATE + ".tmp")).exists()
    sink = resumed_sink(run_dir, checkpoint_step=50)
    sink.write(100, {"loss": 0.1})
    sink.write(150, {"loss": 0.15})
    sink.close()
    assert logged(Path(sink.run.settings.sync_dir)) == (state["id"], True, [150], [])


def test_a_new_run_in_the_same_directory_gets_a_new_id(tmp_path: Path, wandb_env: None) -> None:
    first = WandbSink("offline", tmp_path, project="mtrl")
    first.write(50, {"loss": 0.1})
    first.close()
    second = WandbSink("offline", tmp_path, project="mtrl")
    second.write(50, {"loss": 0.1})  # not a resume: nothing is skipped
    second.close()
    assert second.state["id"] != first.state["id"] and second.state["step"] == 50


def test_an_online_start_that_stalls_falls_back_to_offline_within_the_timeout(
    tmp_path: Path,
    wandb_env: None,
    silent_server: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("WANDB_API_KEY", "0" * 40)  # a login, for a server that never answers
    monkeypatch.setenv("WANDB_BASE_URL", silent_server)
    # W&B's usage reports would make pytest wait ~10 s at exit on the silent server
    monkeypatch.setenv("WANDB_ERROR_REPORTING", "false")
    run_dir = tmp_path / "run"
    start = time.perf_counter()
    sink = WandbSink("online", run_dir, timeout=2.0, project="mtrl", name="run")
    took = time.perf_counter() - start
    sink.write(50, {"loss": 0.1})
    sink.close()

    assert sink.mode == "offline" and 2.0 <= took < 2.0 + 5.0, took
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("warning:")]
    assert "online start failed" in line and "logging offline" in line
    command = line.split("upload later with: ")[1]
    assert shlex.split(command) == ["wandb", "sync", str((run_dir / "wandb").resolve())]
    # nothing is left of the online attempt: one offline run, which the printed command syncs
    assert not list((run_dir / "wandb").glob("run-*"))
    (offline,) = (run_dir / "wandb").glob("offline-run-*")
    run_id, _, rows, _ = logged(offline)
    assert (run_id, rows) == (sink.state["id"], [50])
    dry_run = subprocess.run(
        [sys.executable, "-m", "wandb", *shlex.split(command)[1:], "--dry-run"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "WANDB_BASE_URL": NO_SERVER},
    )
    assert "Would sync 1 run(s)" in dry_run.stdout + dry_run.stderr
