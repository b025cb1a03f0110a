"""A Weights & Biases sink: online when possible, offline otherwise, never a reason to stop."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

STEP_KEY = "env_steps"


def _has_login() -> bool:
    """True if an API key is available (env var or ~/.netrc written by ``wandb login``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return any("wandb" in host for host in netrc.netrc().hosts)
    except (OSError, netrc.NetrcParseError):
        return False


class WandbSink:
    """Logs every row against env steps per task; a failed online start falls back to offline.

    :param mode: ``online`` (offline with one warning when there is no login or the service
        cannot be reached) or ``offline`` (synced later with ``wandb sync``).
    :param run_dir: the run directory; W&B files go to ``run_dir/wandb``.
    :param init_kwargs: project, entity, name, group, tags, config for ``wandb.init``.
    """

    def __init__(self, mode: str, run_dir: str | Path, **init_kwargs: Any) -> None:
        import wandb

        self._wandb = wandb
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        kwargs = {"dir": str(run_dir), **init_kwargs}
        if mode == "online" and not _has_login():
            warnings.warn(
                "W&B: no login found, logging offline (sync later with `wandb sync`)", stacklevel=2
            )
            mode = "offline"
        try:
            self.run = wandb.init(mode=mode, **kwargs)
        except Exception as exc:  # network or auth trouble must never stop training
            if mode == "offline":
                raise
            warnings.warn(
                f"W&B: online start failed ({exc.__class__.__name__}), logging offline",
                stacklevel=2,
            )
            self.run = wandb.init(mode="offline", **kwargs)
        self.mode = mode
        self.run.define_metric(STEP_KEY)
        self.run.define_metric("*", step_metric=STEP_KEY)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        try:
            self.run.log({STEP_KEY: step, **metrics})
        except Exception as exc:  # keep training; the local metrics file has every row
            warnings.warn(f"W&B: log failed ({exc.__class__.__name__}); continuing", stacklevel=2)

    def close(self) -> None:
        try:
            self.run.finish()
        except Exception as exc:
            warnings.warn(f"W&B: finish failed ({exc.__class__.__name__})", stacklevel=2)
