"""Meta-World's scripted expert policies as one batched policy over a suite's observations.

Meta-World ships a hand-written policy per task (``metaworld.policies``); on MT10's tasks they
succeed in about 40-110 steps. They give the evaluation path a policy that solves its tasks,
for tests and for timing evaluations of a successful policy, with no training.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from mtrl.envs.metaworld_tasks import OBS_SIZE, make_metaworld_env
from mtrl.envs.suite import TaskSuite
from mtrl.envs.wrappers import task_ids
from mtrl.errors import MtrlError


class MetaWorldExperts:
    """Actions of each task's scripted Meta-World policy for a batch of suite observations.

    A row's task is read from its one-hot id (``task_ids``), so rows may come in any order and
    any number per task (as ``eval.envs_per_task`` makes them).

    :raises MtrlError: if a task of ``suite`` is not a Meta-World task with a scripted policy.
    """

    def __init__(self, suite: TaskSuite) -> None:
        from metaworld.policies import ENV_POLICY_MAP

        self.num_tasks, self.act_dim = suite.num_tasks, suite.act_dim
        self._policies: list[Any] = []
        for name, spec in zip(suite.task_names, suite.specs, strict=True):
            env_name = (
                spec.raw.args.get("env_name") if spec.raw.make is make_metaworld_env else None
            )
            if env_name not in ENV_POLICY_MAP:
                raise MtrlError(f"task {name!r} has no scripted Meta-World policy")
            self._policies.append(ENV_POLICY_MAP[env_name]())

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        tasks = task_ids(obs, self.num_tasks)
        with warnings.catch_warnings():  # "Constant(s) may be too high": clipped below
            warnings.simplefilter("ignore", UserWarning)
            actions = [
                self._policies[t].get_action(row[:OBS_SIZE])
                for t, row in zip(tasks, obs, strict=True)
            ]
        actions = np.asarray(actions, dtype=np.float32).reshape(len(obs), self.act_dim)
        return np.clip(actions, -1.0, 1.0)
