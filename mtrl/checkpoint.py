"""Atomic checkpoints: write to a temporary file in the same folder, fsync, then rename."""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch

from mtrl.errors import MtrlError


def atomic_write(
    path: str | Path, write: Callable[[BinaryIO], None], exclusive: bool = False
) -> Path:
    """Call ``write(file)`` on a temporary file in ``path``'s folder, fsync it, then rename it
    to ``path``: a crash never leaves a half-written file there.

    :param exclusive: fail with ``FileExistsError`` if ``path`` exists (also when another
        process creates it at the same time) instead of replacing it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if exclusive:
            _publish_new(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path


def _publish_new(tmp: str, path: Path) -> None:
    """Give the complete file ``tmp`` the name ``path`` unless ``path`` exists (FileExistsError)."""
    try:
        os.link(tmp, path)  # atomic, and never replaces an existing file
    except FileExistsError:
        raise
    except OSError:  # no hard links here (some FUSE and SMB mounts): claim the name, then fill it
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        os.replace(tmp, path)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically: a crash never leaves a half-written checkpoint."""
    return atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by ``save_checkpoint`` (tensors, numbers, strings and dicts only)."""
    path = Path(path)
    if not path.is_file():
        raise MtrlError(f"checkpoint not found: {path}")
    try:
        with warnings.catch_warnings():  # e.g. torch's note on a foreign pickle protocol
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # a truncated or foreign file: say which, not a pickle traceback
        raise MtrlError(f"{path} is corrupt or truncated: {_gist(exc)}") from exc
    if not isinstance(state, dict) or "step" not in state:
        raise MtrlError(f"{path} is corrupt or truncated: it holds no mtrl checkpoint")
    return state


def _gist(exc: BaseException, limit: int = 160) -> str:
    """``TypeName: first sentence of the first line`` of an exception, at most ``limit`` chars
    (torch's messages run to paragraphs)."""
    lines = str(exc).strip().splitlines()
    text = lines[0].split(". ")[0] if lines else ""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
