"""A multi-task replay buffer with a task axis: storage [T, capacity, ...] on the training device."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "truncated")


class MultiTaskReplay:
    """Ring buffers of ``capacity`` transitions per task, sampled B per task -> batch [T, B, ...].

    Every vector step inserts one transition per task at once. ``terminated`` (the episode
    ended in the MDP: no bootstrap) and ``truncated`` (time limit: bootstrap) are kept apart.

    :param num_tasks: T.
    :param capacity: transitions kept per task (the oldest are overwritten).
    :param obs_dim: observation size.
    :param act_dim: action size.
    :param device: where storage and sampled batches live.
    :param seed: seeds the sampling generator.
    """

    def __init__(
        self,
        num_tasks: int,
        capacity: int,
        obs_dim: int,
        act_dim: int,
        device: str | torch.device = "cpu",
        seed: int = 0,
    ) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.num_tasks, self.capacity = num_tasks, capacity
        self.device = torch.device(device)
        shapes = {
            "obs": (obs_dim,),
            "action": (act_dim,),
            "reward": (),
            "next_obs": (obs_dim,),
            "terminated": (),
            "truncated": (),
        }
        self.storage = {
            k: torch.zeros((num_tasks, capacity, *s), dtype=torch.float32, device=self.device)
            for k, s in shapes.items()
        }
        self.pos = 0
        self.size = 0
        self._widths = [int(np.prod(shapes[k], dtype=np.int64)) for k in FIELDS]
        self._staging: list[tuple[Tensor, torch.cuda.Event]] = []
        """On a GPU, two pinned host buffers [T, all fields] taken in turns: one transition is
        copied in with one non-blocking copy, while the other buffer's copy may be in flight."""
        self._turn = 0
        if self.device.type == "cuda":
            self._staging = [
                (torch.empty((num_tasks, sum(self._widths)), pin_memory=True), torch.cuda.Event())
                for _ in range(2)
            ]
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self._rows = torch.arange(num_tasks, device=self.device)[:, None]

    def __len__(self) -> int:
        """Transitions stored per task."""
        return self.size

    def add(
        self,
        obs: np.ndarray | Tensor,
        action: np.ndarray | Tensor,
        reward: np.ndarray | Tensor,
        next_obs: np.ndarray | Tensor,
        terminated: np.ndarray | Tensor,
        truncated: np.ndarray | Tensor,
    ) -> None:
        """Insert one transition per task; every argument has a leading task axis [T, ...]."""
        values = (obs, action, reward, next_obs, terminated, truncated)
        if self._staging:
            self._write_staged(values)
        else:
            for key, value in zip(FIELDS, values, strict=True):
                tensor = (
                    torch.as_tensor(np.asarray(value, dtype=np.float32))
                    if not isinstance(value, Tensor)
                    else value.float()
                )
                self.storage[key][:, self.pos] = tensor.to(self.device)
        self.pos = (self.pos + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def _write_staged(self, values: tuple[np.ndarray | Tensor, ...]) -> None:
        """Write a transition on a GPU: fill a pinned buffer, one non-blocking copy, split on
        the device."""
        self._turn ^= 1
        buffer, copied = self._staging[self._turn]
        copied.synchronize()  # this buffer's previous copy (two adds ago) has left it
        host = buffer.numpy()
        start = 0
        for value, width in zip(values, self._widths, strict=True):
            array = value.detach().cpu().numpy() if isinstance(value, Tensor) else value
            host[:, start : start + width] = np.asarray(array).reshape(self.num_tasks, width)
            start += width
        on_device = buffer.to(self.device, non_blocking=True)
        copied.record()
        for key, part in zip(FIELDS, on_device.split(self._widths, dim=1), strict=True):
            self.storage[key][:, self.pos] = part.view(self.storage[key][:, self.pos].shape)

    def sample(self, batch_size: int) -> dict[str, Tensor]:
        """Draw ``batch_size`` transitions per task uniformly: a dict of [T, B, ...] tensors."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        idx = torch.randint(
            0, self.size, (self.num_tasks, batch_size), device=self.device, generator=self.generator
        )
        return {k: v[self._rows, idx] for k, v in self.storage.items()}

    def state_dict(self) -> dict[str, Any]:
        """The stored transitions (only the filled part), pointers and sampling RNG state."""
        return {
            "storage": {k: v[:, : self.size].cpu() for k, v in self.storage.items()},
            "pos": self.pos,
            "size": self.size,
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned (capacity and shapes must match)."""
        size = int(state["size"])
        if size > self.capacity:
            raise ValueError(
                f"checkpoint holds {size} transitions per task, capacity is {self.capacity}"
            )
        for key, value in state["storage"].items():
            if value.shape[0] != self.num_tasks or value.shape[2:] != self.storage[key].shape[2:]:
                raise ValueError(
                    f"replay field {key!r} has shape {tuple(value.shape)} in the checkpoint, "
                    f"expected [{self.num_tasks}, n, {', '.join(map(str, self.storage[key].shape[2:]))}]"
                )
            self.storage[key][:, :size] = value.to(self.device)
        self.pos, self.size = int(state["pos"]), size
        self.generator.set_state(state["generator"].cpu())
