"""On-disk cache of Meta-World's sampled goals: one file per benchmark, seed, env name (MT1 only)
and metaworld and numpy versions.

A file is two JSON lines: a header (format, versions, key, sha256 of the second line), then the
goals as env name -> base64 of each ``Task.data``. A file whose header or checksum does not match
is a miss, to be re-sampled and rewritten. The ``data`` bytes are Meta-World's own pickles, kept
verbatim and never unpickled here; Meta-World unpickles them at each reset, as with fresh goals.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

FORMAT = 1
SUBDIR = "metaworld-goals"

Goals = dict[str, tuple[Any, ...]]
"""Env name -> its ``metaworld.types.Task`` records, as ``sample_goals`` returns them."""

_warned = False


class GoalKey(NamedTuple):
    """What a goal file is for; ``env_name`` only for MT1."""

    benchmark: str
    seed: int
    env_name: str | None = None


def cache_dir() -> Path:
    """``$MTRL_CACHE_DIR``, else ``$XDG_CACHE_HOME/mtrl``, else ``~/.cache/mtrl``; then
    ``metaworld-goals``."""
    root = os.environ.get("MTRL_CACHE_DIR")
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME")
        root = os.path.join(xdg, "mtrl") if xdg else os.path.expanduser("~/.cache/mtrl")
    return Path(root) / SUBDIR


def _header(key: GoalKey) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "metaworld": metadata.version("metaworld"),
        # numpy too: Task.data holds pickled arrays, which older numpy cannot always read
        "numpy": np.__version__,
        "benchmark": key.benchmark,
        "seed": key.seed,
        "env_name": key.env_name,
    }


def goal_path(key: GoalKey) -> Path:
    """The cache file for ``key`` under ``cache_dir()``."""
    h = _header(key)
    parts = [key.benchmark, key.env_name, f"seed{key.seed}"]
    parts += [f"metaworld{h['metaworld']}", f"numpy{h['numpy']}"]
    name = "-".join(re.sub(r"[^A-Za-z0-9._-]", "_", str(p)) for p in parts if p is not None)
    return cache_dir() / f"{name}.jsonl"


def encode(key: GoalKey, goals: Goals) -> bytes:
    """The file contents for ``goals`` sampled for ``key``."""
    payload = {
        name: [base64.b64encode(task.data).decode("ascii") for task in tasks]
        for name, tasks in goals.items()
    }
    body = json.dumps(payload).encode()
    header = {**_header(key), "sha256": hashlib.sha256(body).hexdigest()}
    return json.dumps(header).encode() + b"\n" + body + b"\n"


def decode(key: GoalKey, raw: bytes) -> Goals:
    """The goals in file contents ``raw``; ``ValueError`` unless they are intact and for ``key``."""
    from metaworld.types import Task

    head, _, body = raw.partition(b"\n")
    header = json.loads(head)
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    expected = _header(key)
    found = {field: header.get(field) for field in expected}
    if found != expected:
        raise ValueError(f"header {found} is not {expected}")
    body = body.removesuffix(b"\n")
    if header.get("sha256") != hashlib.sha256(body).hexdigest():
        raise ValueError("checksum mismatch")
    payload = json.loads(body)
    if not isinstance(payload, dict) or not payload:
        raise ValueError("no goals")
    goals: Goals = {}
    for name, encoded in payload.items():
        if not isinstance(encoded, list) or not all(isinstance(s, str) for s in encoded):
            raise ValueError(f"goals of {name!r} are not a list of strings")
        data = [base64.b64decode(s, validate=True) for s in encoded]
        goals[name] = tuple(Task(env_name=name, data=d) for d in data)
    return goals


def load(key: GoalKey) -> Goals | None:
    """The cached goals for ``key``, or None if there is no intact file for it."""
    try:
        return decode(key, goal_path(key).read_bytes())
    except (OSError, ValueError):  # missing, unreadable, corrupt or foreign: sample again
        return None


def save(key: GoalKey, goals: Goals) -> Path | None:
    """Write ``goals`` for ``key`` atomically; on failure warn once on stderr and return None."""
    global _warned
    path = goal_path(key)
    try:
        # imported here: mtrl.checkpoint imports torch, which a cache hit should not need
        from mtrl.checkpoint import atomic_write

        return atomic_write(path, lambda f: f.write(encode(key, goals)))
    except OSError as exc:
        if not _warned:
            _warned = True
            print(
                f"warning: cannot cache Meta-World goals in {path.parent}: {exc}", file=sys.stderr
            )
        return None
