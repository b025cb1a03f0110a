"""A Weights & Biases sink: online when possible, offline otherwise, never a reason to stop."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mtrl.logging.logger import Sink

STEP_KEY = "env_steps"
"""The x axis of every W&B chart: env steps per task."""


def _has_login() -> bool:
    """True if an API key is available (env var or ~/.netrc written by ``wandb login``)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        import netrc

        return any("wandb" in host for host in netrc.netrc().hosts)
    except (OSError, netrc.NetrcParseError):
        return False


def _warn(message: str) -> None:
    print(f"warning: W&B: {message}", file=sys.stderr)


class WandbSink(Sink):
    """Logs every row against env steps per task; a failed online start falls back to offline.

    Offline runs are written to ``run_dir/wandb/offline-run-*`` and uploaded later with
    ``wandb sync``. A failure after the start (a ``log`` that raises) is reported by the logger,
    which keeps training.

    :param mode: ``online`` (offline with one warning line when there is no login or the service
        cannot be reached; ``WANDB_INIT_TIMEOUT`` bounds the wait) or ``offline``.
    :param run_dir: the run directory; W&B files go to ``run_dir/wandb``.
    :param init_kwargs: project, entity, name, group, tags, config for ``wandb.init``.
    """

    accepts_images: ClassVar[bool] = True

    def __init__(self, mode: str, run_dir: str | Path, **init_kwargs: Any) -> None:
        import wandb

        self._wandb = wandb
        Path(run_dir).mkdir(parents=True, exist_ok=True)
        kwargs = {"dir": str(run_dir), **init_kwargs}
        if mode == "online" and not _has_login():
            _warn("no login found, logging offline (upload later with `wandb sync`)")
            mode = "offline"
        try:
            self.run = wandb.init(mode=mode, **kwargs)
        except Exception as exc:  # network or auth trouble must never stop training
            if mode == "offline":
                raise
            _warn(
                f"online start failed ({type(exc).__name__}), logging offline "
                "(upload later with `wandb sync`)"
            )
            mode = "offline"
            self.run = wandb.init(mode=mode, **kwargs)
        self.mode = mode
        self.run.define_metric(STEP_KEY)
        self.run.define_metric("*", step_metric=STEP_KEY)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        self.run.log({STEP_KEY: step, **metrics})

    def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        self.run.log({STEP_KEY: step, **{k: self._wandb.Image(v) for k, v in images.items()}})

    def write_info(self, name: str, info: dict[str, Any]) -> None:
        self.run.config.update({name: info}, allow_val_change=True)

    def close(self) -> None:
        self.run.finish()
