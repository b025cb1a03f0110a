"""The cheap built-in suite: a 2-D point mass in pure Python, with conflicting tasks.

Every task shares the dynamics ``p' = clip(p + s * 0.1 * a, -1, 1)`` and the dense reward
``-|p - goal|``. Tasks differ in the goal (spread evenly on a circle; it is not in the
observation, so only the one-hot tells tasks apart) and in the sign ``s`` of the action effect:
every other task is inverted. Two tasks thus want opposite actions in the same state, which pulls
a shared policy in conflicting directions. ``info["success"]`` is True within ``success_radius``
of the goal.

Goal and sign conflicts alone are easy for a one-hot-conditioned network to separate. The
``reward_scales`` of a suite make them bite: a few tasks with rewards 30x larger than the rest
dominate the mean gradient of the shared networks, and the quiet tasks learn slowly or not at
all (measured in BENCHMARKS.md), while each task alone is solved within 1,000 steps.
"""

from __future__ import annotations

import math
from typing import Any

import gymnasium as gym
import numpy as np

from mtrl.envs.config import SuiteConfig, reject_fields
from mtrl.envs.spec import RawTask
from mtrl.errors import MtrlError

ENV_ID = "mtrl/PointMass-v0"
DEFAULT_EPISODE_STEPS = 50


class PointMassEnv(gym.Env):
    """A point in [-1, 1]^2 moved by 2-D velocity actions towards a hidden goal.

    :param goal_angle: direction of the goal from the origin, in degrees.
    :param goal_distance: distance of the goal from the origin.
    :param inverted: if True, actions move the point the opposite way.
    :param step_size: largest move per step along each axis.
    :param success_radius: success when closer than this to the goal.
    :param init_range: start uniformly in [-init_range, init_range]^2.
    :param reward_scale: multiplies the reward (tasks of very different scales compete harder
        for a shared network).
    """

    metadata: dict[str, Any] = {"render_modes": []}  # noqa: RUF012

    def __init__(
        self,
        goal_angle: float = 0.0,
        goal_distance: float = 0.7,
        inverted: bool = False,
        step_size: float = 0.1,
        success_radius: float = 0.1,
        init_range: float = 0.1,
        reward_scale: float = 1.0,
    ) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        rad = math.radians(goal_angle)
        self.goal = (goal_distance * math.cos(rad), goal_distance * math.sin(rad))
        self._gain = -step_size if inverted else step_size
        self._success_radius = success_radius
        self._init_range = init_range
        self._reward_scale = reward_scale
        self._x = self._y = 0.0

    def _obs(self) -> np.ndarray:
        return np.array((self._x, self._y), dtype=np.float32)

    def _distance(self) -> float:
        return math.hypot(self._x - self.goal[0], self._y - self.goal[1])

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start near the origin; the goal stays fixed."""
        super().reset(seed=seed)
        r = self._init_range
        self._x, self._y = (float(v) for v in self.np_random.uniform(-r, r, size=2))
        return self._obs(), {"success": self._distance() < self._success_radius}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Move by ``step_size * action`` (inverted for inverted tasks), clipped to the arena."""
        ax = min(max(float(action[0]), -1.0), 1.0)
        ay = min(max(float(action[1]), -1.0), 1.0)
        self._x = min(max(self._x + self._gain * ax, -1.0), 1.0)
        self._y = min(max(self._y + self._gain * ay, -1.0), 1.0)
        dist = self._distance()
        success = dist < self._success_radius
        return self._obs(), -dist * self._reward_scale, False, False, {"success": success}

    def get_state(self) -> dict[str, Any]:
        """Position and RNG state: all a checkpoint needs to continue this env exactly."""
        return {"xy": (self._x, self._y), "rng": self.np_random.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore what ``get_state`` returned."""
        self._x, self._y = (float(v) for v in state["xy"])
        self.np_random.bit_generator.state = state["rng"]


def make_pointmass(**kwargs: Any) -> gym.Env:
    """Build a ``PointMassEnv`` directly (no gymnasium checker layers: this is the fast path)."""
    return PointMassEnv(**kwargs)


def task_params(index: int, num_tasks: int, reward_scale: float = 1.0) -> dict[str, Any]:
    """Goal angle and inversion (and reward scale, if not 1) of task ``index`` of ``num_tasks``."""
    params: dict[str, Any] = {"goal_angle": 360.0 * index / num_tasks, "inverted": index % 2 == 1}
    if reward_scale != 1.0:
        params["reward_scale"] = reward_scale
    return params


def task_name(params: dict[str, Any]) -> str:
    """A readable task name, e.g. ``goal090-inv``, or ``goal090-inv-x30`` for a scaled reward."""
    angle = params["goal_angle"]
    text = f"{angle:03.0f}" if float(angle).is_integer() else f"{angle:05.1f}"
    scale = params.get("reward_scale", 1.0)
    return f"goal{text}" + ("-inv" if params["inverted"] else "") + (f"-x{scale:g}" * (scale != 1))


def build_tasks(cfg: SuiteConfig, seed: int) -> tuple[list[RawTask], int]:
    """Kind ``cheap``: ``num_tasks`` point-mass tasks, goals evenly spread, odd ones inverted."""
    del seed  # the tasks are fixed; the seed only fixes start states through env seeds
    reject_fields(cfg, "benchmark", "tasks", "reward_version")
    if cfg.num_tasks is None or cfg.num_tasks < 1:
        raise MtrlError(f"suite {cfg.name!r}: kind 'cheap' needs num_tasks >= 1")
    scales = [float(s) for s in cfg.reward_scales]
    if len(scales) > cfg.num_tasks or not all(s > 0 for s in scales):
        raise MtrlError(
            f"suite {cfg.name!r}: reward_scales needs at most num_tasks={cfg.num_tasks} positive "
            f"numbers, got {cfg.reward_scales}"
        )
    scales += [1.0] * (cfg.num_tasks - len(scales))
    tasks = []
    for i in range(cfg.num_tasks):
        params = task_params(i, cfg.num_tasks, scales[i])
        tasks.append(RawTask(task_name(params), make_pointmass, params, obs_size=2, act_dim=2))
    return tasks, cfg.max_episode_steps or DEFAULT_EPISODE_STEPS


if ENV_ID not in gym.registry:
    gym.register(
        ENV_ID,
        entry_point="mtrl.envs.pointmass:PointMassEnv",
        max_episode_steps=DEFAULT_EPISODE_STEPS,
    )
