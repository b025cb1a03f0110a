"""Arrays shared between the rollout parent and its workers.

One flat block of bytes holds every per-task array; both sides build the same numpy views
on it from ``(num_tasks, obs_dim, act_dim)``. With ``shared=True`` the block is a
``multiprocessing.RawArray``: memory mapped from a temporary file that multiprocessing
unlinks as soon as it is created, handed to each worker (as a file descriptor) once, when
it starts. So no shared-memory name exists to leak or unlink, even if the parent is killed;
the memory goes away with the last process that maps it.
"""

from __future__ import annotations

import multiprocessing
from typing import Any

import numpy as np

_ALIGN = 64  # bytes; keeps each array on its own cache line

# name -> (dtype, trailing shape key); the leading axis of every array is the task axis.
_FIELDS: tuple[tuple[str, type, str], ...] = (
    ("actions", np.float32, "act"),  # written by the parent before a step
    ("active", np.bool_, ""),  # written by the parent before a step: the envs to step
    ("obs", np.float32, "obs"),  # observation to act on next (reset obs after an episode end)
    ("next_obs", np.float32, "obs"),  # true next observation (final obs at an episode end)
    ("reward", np.float32, ""),
    ("terminated", np.bool_, ""),
    ("truncated", np.bool_, ""),
    ("success", np.bool_, ""),
    ("episode_return", np.float64, ""),  # stats of the episode that ended at this step
    ("episode_length", np.int64, ""),
    ("episode_success", np.bool_, ""),
    ("step_time", np.float64, ""),  # seconds spent in env.step so far, per task
    ("step_count", np.int64, ""),  # env.step calls so far, per task
    ("busy", np.int8, ""),  # what the env is doing (BUSY_PHASES), to name one that hangs
)

BUSY_PHASES = ("", "construction", "reset", "step")
"""Values of ``busy``: 0 while the env is idle, else the index of the call it is inside."""


class SharedArrays:
    """Numpy views, one per field of ``_FIELDS``, on one (optionally shared) byte block.

    :param num_tasks: T, the length of the task axis.
    :param obs_dim: observation size.
    :param act_dim: action size.
    :param shared: allocate the block in shared memory (for worker processes).
    :param raw: an existing block to view (used when unpickling in a worker).
    """

    actions: np.ndarray
    active: np.ndarray
    obs: np.ndarray
    next_obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray
    episode_return: np.ndarray
    episode_length: np.ndarray
    episode_success: np.ndarray
    step_time: np.ndarray
    step_count: np.ndarray
    busy: np.ndarray

    def __init__(
        self, num_tasks: int, obs_dim: int, act_dim: int, shared: bool = True, raw: Any = None
    ) -> None:
        self.dims = (num_tasks, obs_dim, act_dim)
        trailing = {"obs": (obs_dim,), "act": (act_dim,), "": ()}
        layout = []
        offset = 0
        for name, dtype, key in _FIELDS:
            shape = (num_tasks, *trailing[key])
            layout.append((name, dtype, shape, offset))
            nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
            offset += -(-nbytes // _ALIGN) * _ALIGN
        if raw is None:
            raw = multiprocessing.RawArray("b", offset) if shared else bytearray(offset)
        self._raw = raw
        for name, dtype, shape, start in layout:
            count = int(np.prod(shape))
            view = np.frombuffer(raw, dtype=dtype, count=count, offset=start).reshape(shape)
            setattr(self, name, view)

    def __reduce__(self) -> tuple[Any, ...]:
        # Only valid while starting a process: RawArray refuses to pickle otherwise.
        return (SharedArrays, (*self.dims, True, self._raw))
