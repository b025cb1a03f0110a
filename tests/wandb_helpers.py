"""Keep W&B inside a test's tmp folder and away from the network (imported by name: the tests
folder is on sys.path, see conftest.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

NO_SERVER = "http://127.0.0.1:9"  # nothing listens: any attempt to reach W&B fails at once


def isolate_wandb(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Point every W&B folder and the server address into ``tmp_path``; reset W&B's process-wide
    settings (it reads the environment once per process)."""
    import wandb

    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_INIT_TIMEOUT", "WANDB_RUN_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_BASE_URL", NO_SERVER)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    wandb.teardown()


def wandb_records(offline_run: Path) -> list[dict]:
    """The records of an offline run's transaction log, read by W&B's own inspector."""
    out = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", "--json", str(offline_run)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(offline_run),
            "WANDB_MODE": "offline",
            "WANDB_BASE_URL": NO_SERVER,
        },
    ).stdout
    return [json.loads(line) for line in out.splitlines() if line.startswith("{")]
