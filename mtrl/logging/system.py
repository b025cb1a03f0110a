"""What a run ran on: package versions, device, CPUs, platform and the git commit of mtrl."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import mtrl

PACKAGES = {
    "torch": "torch",
    "numpy": "numpy",
    "gymnasium": "gymnasium",
    "metaworld": "metaworld",
    "stable-baselines3": "stable-baselines3",
    "wandb": "wandb",
    "tensorboard": "tensorboard",
    "mtrl": "mtrl-bench",
}
"""Reported name -> distribution name (read from package metadata, nothing is imported)."""


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages a run depends on (None where one is missing)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name, dist in PACKAGES.items():
        try:
            versions[name] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[name] = mtrl.__version__ if name == "mtrl" else None
    return versions


def git_state(path: str | Path | None = None) -> dict[str, Any]:
    """``{"commit": sha, "dirty": bool}`` of the git checkout mtrl is imported from; {} otherwise.

    Only a checkout whose top level is the folder holding the ``mtrl`` package counts, so an
    installed copy inside some other repository (e.g. a virtualenv in a project) reports nothing.
    """
    root = Path(path) if path is not None else Path(mtrl.__file__).resolve().parents[1]
    try:
        top, commit = _git(root, "rev-parse", "--show-toplevel", "HEAD").splitlines()
        if Path(top).resolve() != root.resolve():
            return {}
        dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no").strip())
    except (OSError, ValueError, subprocess.SubprocessError):
        return {}
    return {"commit": commit, "dirty": dirty}


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(root), *args],
        capture_output=True,
        text=True,
        check=True,
        timeout=10,
    ).stdout


def system_info(device: str | torch.device = "cpu") -> dict[str, Any]:
    """Versions, device (with the CUDA device's name), CPUs, platform and git state, as plain data.

    :param device: the run's torch device.
    """
    device = torch.device(device)
    info: dict[str, Any] = {
        "versions": package_versions(),
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_available"] = len(os.sched_getaffinity(0))
    if device.type == "cuda" and torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(device)
        info["cuda_version"] = torch.version.cuda
    git = git_state()
    if git:
        info["git"] = git
    return info
