"""Kind ``gym``: any gymnasium env, by registered id or ``module:Class`` entry point."""

from __future__ import annotations

import contextlib
import importlib
import importlib.machinery
import sys
from collections.abc import Iterator
from contextvars import ContextVar
from pathlib import Path
from types import ModuleType
from typing import Any

import gymnasium as gym
import numpy as np

from mtrl.envs.config import SuiteConfig, TaskConfig, reject_fields, unique_names
from mtrl.envs.spec import RawTask
from mtrl.errors import MtrlError, close_matches

_SUITE_DIR: ContextVar[Path | None] = ContextVar("suite_dir", default=None)
"""The folder of the suite YAML being built, searched for ``module:Class`` plug-ins."""


@contextlib.contextmanager
def suite_dir(folder: str | Path | None) -> Iterator[None]:
    """Search ``folder`` (the suite YAML's) for ``module:Class`` modules while building a suite."""
    token = _SUITE_DIR.set(None if folder is None else Path(folder).resolve())
    try:
        yield
    finally:
        _SUITE_DIR.reset(token)


@contextlib.contextmanager
def _on_path(folder: str | None) -> Iterator[None]:
    """``folder`` first on ``sys.path`` for the duration (nothing when None or already there).

    Only while importing: a plug-in's folder should not shadow unrelated modules later on.
    """
    if folder is None or folder in sys.path:
        yield
        return
    sys.path.insert(0, folder)
    importlib.invalidate_caches()  # the folder's listing may be cached from before a file appeared
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)


def import_plugin(module: str, folder: str | None = None) -> ModuleType:
    """Import ``module``, with ``folder`` (where ``_import`` found it) on the path meanwhile."""
    with _on_path(folder):
        return importlib.import_module(module)


def make_registered(
    env_id: str,
    max_episode_steps: int,
    kwargs: dict[str, Any],
    module: str | None = None,
    folder: str | None = None,
) -> gym.Env:
    """``gym.make`` a registered id (importing ``module`` first if it registers the id)."""
    if module is not None:
        import_plugin(module, folder)
    return gym.make(env_id, max_episode_steps=max_episode_steps, **kwargs)


def make_entry_point(
    entry_point: str, kwargs: dict[str, Any], folder: str | None = None
) -> gym.Env:
    """Instantiate ``module:Class`` with ``kwargs`` (``folder``: where the module was found)."""
    module, attr = entry_point.split(":", 1)
    return getattr(import_plugin(module, folder), attr)(**kwargs)


def _missing(exc: ImportError, module: str) -> bool:
    """True if ``exc`` says the top-level package of ``module`` is absent (not something that
    the module imports, nor a submodule of a package that exists)."""
    return isinstance(exc, ModuleNotFoundError) and exc.name == module.partition(".")[0]


def _on_sys_path(top: str) -> bool:
    """True if a fresh process (same ``sys.path``) finds the top-level module ``top``."""
    return any(
        finder.find_spec(top, None) is not None
        for finder in sys.meta_path
        if hasattr(finder, "find_spec")
    )


def _loaded_from(top: str) -> str | None:
    """The folder the already imported top-level module ``top`` was loaded from, if any."""
    spec = getattr(sys.modules.get(top), "__spec__", None)
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package: the folder holding it
        return str(Path(next(iter(spec.submodule_search_locations))).parent)
    return str(Path(spec.origin).parent) if spec.has_location and spec.origin else None


def _import(module: str, task: str) -> tuple[ModuleType, str | None]:
    """Import ``module`` from ``sys.path``, else from the suite YAML's folder, else from the
    current directory; return it and the folder a worker process must add to import it (None
    when ``sys.path`` has it: spawned workers get the parent's ``sys.path``, nothing more)."""
    top = module.partition(".")[0]
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        if not _missing(exc, module):
            raise MtrlError(f"task {task!r}: cannot import module {module!r} ({exc})") from exc
    else:  # maybe from sys.modules only, found in a folder by an earlier suite
        return imported, None if _on_sys_path(top) else _loaded_from(top)
    folders = [str(f) for f in (_SUITE_DIR.get(), Path.cwd()) if f is not None]
    folders = list(dict.fromkeys(folders))
    for folder in folders:
        if importlib.machinery.PathFinder.find_spec(top, [folder]) is None:
            continue
        try:
            return import_plugin(module, folder), folder
        except ImportError as exc:
            if not _missing(exc, module):
                raise MtrlError(f"task {task!r}: cannot import module {module!r} ({exc})") from exc
    raise MtrlError(
        f"cannot import module {module!r} for task {task!r}: put its folder on PYTHONPATH "
        f"(looked in: {', '.join(folders)})"
    )


def _resolve(task: TaskConfig) -> tuple[str, Any, dict[str, Any], int | None]:
    """Return (default name, maker, maker args without the step limit, registered step limit)."""
    if task.id in gym.registry:
        limit = gym.spec(task.id).max_episode_steps
        return task.id, make_registered, {"env_id": task.id, "kwargs": task.kwargs}, limit
    if ":" not in task.id:
        raise MtrlError(
            f"unknown gymnasium id {task.id!r}{close_matches(task.id, gym.registry)}; "
            "give a registered id (e.g. Pendulum-v1) or an entry point module:Class"
        )
    module_name, attr = task.id.split(":", 1)
    module, folder = _import(module_name, task.id)
    if attr in gym.registry:  # "module:Env-v0": the module registers the id on import
        limit = gym.spec(attr).max_episode_steps
        args = {"env_id": attr, "kwargs": task.kwargs, "module": module_name, "folder": folder}
        return attr, make_registered, args, limit
    if not callable(getattr(module, attr, None)):
        names = [n for n in dir(module) if not n.startswith("_")]
        raise MtrlError(
            f"bad entry point {task.id!r}: module {module_name!r} has no class {attr!r}"
            f"{close_matches(attr, names)}"
        )
    args = {"entry_point": task.id, "kwargs": task.kwargs, "folder": folder}
    return attr, make_entry_point, args, None


def _check_spaces(name: str, env: gym.Env) -> tuple[int, int]:
    """Return (flat obs size, act dim); reject spaces mtrl cannot use."""
    obs, act = env.observation_space, env.action_space
    if not isinstance(obs, gym.spaces.Box):
        raise MtrlError(
            f"task {name!r}: observation space {obs} is not a Box; mtrl needs vector observations"
        )
    if not isinstance(act, gym.spaces.Box):
        raise MtrlError(
            f"task {name!r}: action space {act} is not a Box; mtrl's agents need continuous actions"
        )
    if not (np.all(np.isfinite(act.low)) and np.all(np.isfinite(act.high))):
        raise MtrlError(f"task {name!r}: action bounds must be finite to rescale them to [-1, 1]")
    return int(np.prod(obs.shape)), int(np.prod(act.shape))


def _probe(name: str, maker: Any, args: dict[str, Any]) -> tuple[int, int]:
    """Build the env once to read and check its spaces."""
    try:
        env = maker(**args)
    except Exception as exc:
        text = " ".join(str(exc).split())
        raise MtrlError(
            f"task {name!r}: building the env failed: {type(exc).__name__}: {text}"
        ) from exc
    try:
        return _check_spaces(name, env)
    finally:
        env.close()


def _episode_steps(cfg: SuiteConfig, names: list[str], limits: list[int | None]) -> int:
    if cfg.max_episode_steps is not None:
        return cfg.max_episode_steps
    if len(set(limits)) == 1 and limits[0] is not None:
        return limits[0]
    found = ", ".join(f"{n}: {lim}" for n, lim in zip(names, limits, strict=True))
    raise MtrlError(
        f"suite {cfg.name!r}: set max_episode_steps; the tasks' registered limits differ or are "
        f"missing ({found})"
    )


def build_tasks(cfg: SuiteConfig, seed: int) -> tuple[list[RawTask], int]:
    """Kind ``gym``: one task per listed id or entry point, each built once to check its spaces."""
    del seed  # gym envs are seeded through reset(seed=...)
    reject_fields(cfg, "benchmark", "num_tasks", "reward_version", "reward_scales")
    configs = cfg.task_configs()
    if not configs:
        raise MtrlError(f"suite {cfg.name!r}: kind 'gym' needs a list of tasks")
    resolved = [_resolve(t) for t in configs]
    names = [t.name or r[0] for t, r in zip(configs, resolved, strict=True)]
    unique_names(names, cfg.name)
    max_steps = _episode_steps(cfg, names, [r[3] for r in resolved])
    tasks = []
    for name, (_, maker, args, _) in zip(names, resolved, strict=True):
        if maker is make_registered:
            args = {**args, "max_episode_steps": max_steps}
        obs_size, act_dim = _probe(name, maker, args)
        tasks.append(RawTask(name, maker, args, obs_size=obs_size, act_dim=act_dim))
    return tasks, max_steps
