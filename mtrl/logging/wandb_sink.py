"""A Weights & Biases sink: online when possible, offline otherwise, never a reason to stop.

One run directory is one W&B run: its id is drawn once and kept in ``run_dir/wandb.json``
with the last env step sent, so a resumed run continues the same W&B run (``resume="allow"``)
and skips the rows it re-generates (W&B cannot delete rows). Offline parts of one run, written to
``run_dir/wandb/offline-run-*``, are uploaded in order by ``wandb sync run_dir/wandb``. A run
killed with -9 loses what W&B had not yet written (offline: up to its last 32 KiB); those rows
are not sent again.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from mtrl.logging.logger import Sink

STEP_KEY = "env_steps"
"""The x axis of every W&B chart: env steps per task."""
STATE = "wandb.json"
"""The run directory's W&B id and the last env steps sent (rows and images)."""


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


def new_run_id() -> str:
    """8 random base-36 characters, like the ids W&B draws itself."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def read_state(run_dir: Path) -> dict[str, Any] | None:
    """The W&B state saved in a run directory; None if there is none (or it is unreadable)."""
    path = run_dir / STATE
    try:
        state = json.loads(path.read_text())
        if isinstance(state.get("id"), str):
            return state
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError):
        pass
    _warn(f"{path} is unreadable, starting a new W&B run")
    return None


def _write_state(run_dir: Path, state: dict[str, Any]) -> None:
    # atomic, so a run killed while writing keeps the previous state; no fsync (a killed process
    # loses nothing the kernel already has)
    tmp = run_dir / (STATE + ".tmp")
    tmp.write_text(json.dumps(state))
    os.replace(tmp, run_dir / STATE)


def _remove_new_entries(folder: Path, before: set[Path] | None) -> None:
    """Remove what appeared in ``folder`` since ``before`` (all of it if it did not exist)."""
    if before is None or not folder.is_dir():
        shutil.rmtree(folder, ignore_errors=True)
        return
    for path in set(folder.iterdir()) - before:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _stop_wandb_analytics() -> None:
    """Stop W&B's own usage reports for this process: at exit they would wait on the server."""
    try:
        from wandb.analytics.opentelemetry import opentelemetry_proxy

        opentelemetry_proxy.disable()
    except (ImportError, AttributeError):  # another wandb version: at worst a slower exit
        pass


def start_run(
    mode: str, kwargs: dict[str, Any], timeout: float, warn: Callable[[str], None] = _warn
) -> Any:
    """``wandb.init(**kwargs)`` online if asked for and possible within ``timeout`` seconds, else
    offline; each fallback prints one line with the command that uploads the offline files.

    :param kwargs: ``wandb.init`` arguments; ``dir`` is where W&B writes (``<dir>/wandb``).
    """
    import wandb

    folder = Path(kwargs["dir"]) / "wandb"
    sync = f"wandb sync {shlex.quote(str(folder.resolve()))}"
    if mode == "online" and not _has_login():
        warn(f"no login found, logging offline; upload later with: {sync}")
        mode = "offline"
    if mode == "online":
        before = set(folder.iterdir()) if folder.is_dir() else None
        # quiet: else the login line asks the server who is logged in, a wait the timeout misses
        settings = wandb.Settings(init_timeout=timeout, quiet=True)
        start = time.perf_counter()
        try:
            return wandb.init(mode="online", settings=settings, **kwargs)
        except Exception as exc:  # network or auth trouble must never stop training
            failure = f"{type(exc).__name__} after {time.perf_counter() - start:.1f} s"
        # W&B's service still holds the failed run (and its id): stop it before the offline start
        # and before removing the folder it wrote
        wandb.teardown()
        _stop_wandb_analytics()
        _remove_new_entries(folder, before)
        warn(f"online start failed ({failure}), logging offline; upload later with: {sync}")
    return wandb.init(mode="offline", **kwargs)


class WandbSink(Sink):
    """Logs every row against env steps per task; a failed online start falls back to offline.

    A failure after the start (a ``log`` that raises) is reported by the logger, which keeps
    training.

    :param mode: ``online`` (offline with one warning line when there is no login or the service
        cannot be reached within ``timeout``) or ``offline``.
    :param run_dir: the run directory; W&B files go to ``run_dir/wandb``.
    :param resume: continue the W&B run saved in ``run_dir`` and skip rows up to the last step
        already sent; otherwise start a new W&B run.
    :param timeout: seconds an online start may take before logging offline instead.
    :param init_kwargs: project, entity, name, group, tags, config for ``wandb.init``.
    """

    accepts_images: ClassVar[bool] = True

    def __init__(
        self,
        mode: str,
        run_dir: str | Path,
        resume: bool = False,
        timeout: float = 30.0,
        **init_kwargs: Any,
    ) -> None:
        import wandb

        self._wandb = wandb
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        state = read_state(self.run_dir) if resume else None
        self.state: dict[str, Any] = state or {"id": new_run_id(), "step": -1, "image_step": -1}
        _write_state(self.run_dir, self.state)  # the id survives a kill before the first row
        kwargs = {"dir": str(self.run_dir), "id": self.state["id"], "resume": "allow"}
        kwargs.update(init_kwargs)
        self.run = start_run(mode, kwargs, timeout)
        self.mode = str(self.run.settings.mode)
        self.run.define_metric(STEP_KEY)
        self.run.define_metric("*", step_metric=STEP_KEY)

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if step <= self.state["step"]:  # sent before the run was resumed
            return
        self.run.log({STEP_KEY: step, **metrics})
        self._sent("step", step)

    def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
        if step <= self.state["image_step"]:
            return
        self.run.log({STEP_KEY: step, **{k: self._wandb.Image(v) for k, v in images.items()}})
        self._sent("image_step", step)

    def write_info(self, name: str, info: dict[str, Any]) -> None:
        self.run.config.update({name: info}, allow_val_change=True)

    def close(self) -> None:
        self.run.finish()

    def _sent(self, key: str, step: int) -> None:
        self.state[key] = step
        _write_state(self.run_dir, self.state)
