"""Kind ``metaworld``: Meta-World 3.x benchmarks (MT10, MT25, MT50) and single tasks (MT1).

Goals are sampled once per (benchmark, seed) with Meta-World's own benchmark classes (MT50: ~25 s)
and kept in the process and on disk (``goal_cache``, under ``$MTRL_CACHE_DIR``, else
``$XDG_CACHE_HOME/mtrl`` or ``~/.cache/mtrl``), so only a first start samples them. Each task's
env factory then carries only that task's 50 ``Task`` records (env name + pickled bytes). A new
goal is drawn at every reset from the env's ``np_random``, which ``reset(seed=...)`` reseeds here
(Meta-World itself ignores that seed).
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym

from mtrl.envs import goal_cache
from mtrl.envs.config import SuiteConfig, TaskConfig, reject_fields, unique_names
from mtrl.envs.spec import RawTask
from mtrl.errors import MtrlError, close_matches

BENCHMARKS = ("MT1", "MT10", "MT25", "MT50")
REWARD_VERSIONS = ("v2", "v1")
OBS_SIZE = 39  # Meta-World 3.x observation: hand, gripper, 2 objects, previous frame, goal
ACT_DIM = 4
DEFAULT_EPISODE_STEPS = 500


class ReseedGoalsWrapper(gym.Wrapper):
    """Make ``reset(seed=s)`` reseed Meta-World's goal sampler (the env's ``np_random``)."""

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reseed the env on ``seed``, then let the task wrapper draw a goal and reset."""
        if seed is not None:
            self.unwrapped.seed(seed)
        return self.env.reset(seed=seed, options=options)


def make_metaworld_env(
    env_name: str,
    tasks: tuple[Any, ...],
    seed: int,
    reward_version: str,
    max_episode_steps: int,
) -> gym.Env:
    """Build one Meta-World env that draws a goal from ``tasks`` at each reset."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS
    from metaworld.wrappers import RandomTaskSelectWrapper

    env = ALL_V3_ENVIRONMENTS[env_name](reward_function_version=reward_version)
    env.seed(seed)
    env.max_path_length = max_episode_steps  # the raw env refuses to step past it
    return ReseedGoalsWrapper(RandomTaskSelectWrapper(env, list(tasks)))


@functools.lru_cache(maxsize=8)
def sample_goals(benchmark: str, seed: int, env_name: str | None = None) -> dict[str, tuple]:
    """Meta-World's 50 pre-sampled goals per task, by env name (cached per process and on disk).

    :param benchmark: MT10, MT25, MT50, or MT1 together with ``env_name``.
    :param seed: seed of Meta-World's goal sampling.
    """
    key = goal_cache.GoalKey(benchmark, int(seed), env_name if benchmark == "MT1" else None)
    goals = goal_cache.load(key)
    if goals is None:
        goals = draw_goals(benchmark, seed, env_name)
        goal_cache.save(key, goals)
    return goals


def draw_goals(benchmark: str, seed: int, env_name: str | None = None) -> dict[str, tuple]:
    """Sample the goals of ``sample_goals`` with Meta-World, bypassing both caches."""
    import metaworld

    if benchmark == "MT1":
        bench = metaworld.MT1(env_name, seed=seed)
    else:
        bench = getattr(metaworld, benchmark)(seed=seed)
    goals: dict[str, list] = {name: [] for name in bench.train_classes}
    for task in bench.train_tasks:
        goals[task.env_name].append(task)
    return {name: tuple(tasks) for name, tasks in goals.items()}


def benchmark_env_names(benchmark: str) -> list[str]:
    """The env names of MT10, MT25 or MT50, in Meta-World's order, without sampling goals."""
    from metaworld import env_dict

    return list(getattr(env_dict, f"{benchmark}_V3"))


def _check_choice(what: str, value: str, choices: Any) -> None:
    if value not in choices:
        listing = f"; choose from: {', '.join(choices)}" if len(choices) <= 12 else ""
        raise MtrlError(f"unknown {what} {value!r}{close_matches(value, choices)}{listing}")


def _goals_for(bench: str, configs: list[TaskConfig], seed: int) -> list[tuple]:
    if bench == "MT1":
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS

        for t in configs:
            _check_choice("Meta-World env", t.id, list(ALL_V3_ENVIRONMENTS))
        return [sample_goals("MT1", seed, t.id)[t.id] for t in configs]
    for t in configs:  # check names before the slow goal sampling
        _check_choice(f"{bench} task", t.id, benchmark_env_names(bench))
    goals = sample_goals(bench, seed)
    return [goals[t.id] for t in configs]


def build_tasks(cfg: SuiteConfig, seed: int) -> tuple[list[RawTask], int]:
    """Kind ``metaworld``: the benchmark's tasks (or the listed subset), goals seeded by ``seed``."""
    reject_fields(cfg, "num_tasks", "reward_scales")
    version = cfg.reward_version or "v2"
    _check_choice("reward_version", version, REWARD_VERSIONS)
    if cfg.benchmark is None:
        raise MtrlError(f"suite {cfg.name!r}: kind 'metaworld' needs benchmark: {BENCHMARKS}")
    _check_choice("Meta-World benchmark", cfg.benchmark, BENCHMARKS)
    configs = cfg.task_configs()
    for t in configs:
        if t.kwargs:
            raise MtrlError(f"task {t.id!r}: kwargs are not supported for Meta-World tasks")
    if cfg.benchmark == "MT1" and not configs:
        raise MtrlError(f"suite {cfg.name!r}: benchmark MT1 needs tasks, e.g. [reach-v3]")
    if not configs:
        configs = [TaskConfig(id=name) for name in benchmark_env_names(cfg.benchmark)]
    goals = _goals_for(cfg.benchmark, configs, seed)
    names = [t.name or t.id for t in configs]
    unique_names(names, cfg.name)
    max_steps = cfg.max_episode_steps or DEFAULT_EPISODE_STEPS
    tasks = []
    for i, (name, t, task_goals) in enumerate(zip(names, configs, goals, strict=True)):
        args = {
            "env_name": t.id,
            "tasks": task_goals,
            "seed": seed + i,
            "reward_version": version,
            "max_episode_steps": max_steps,
        }
        tasks.append(RawTask(name, make_metaworld_env, args, obs_size=OBS_SIZE, act_dim=ACT_DIM))
    return tasks, max_steps
