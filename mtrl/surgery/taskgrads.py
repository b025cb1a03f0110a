"""Per-task gradients as a [T, P] matrix kept in column blocks, one block per parameter.

The vectorised engine produces one [T, *shape] gradient per parameter. Concatenating them into
a flat [T, P] matrix costs a full copy (as much as a third of the backward for MT-SAC sized
critics at T=50), and writing a direction back into ``.grad`` would split it again. Every
aggregator only needs the Gramian G Gᵀ and combinations wᵀG, which blocks give directly.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


class TaskGradients:
    """A [T, P] matrix of per-task gradients stored as blocks [T, *shape_k], never concatenated.

    :param blocks: per-parameter gradients with the task axis first (same T, dtype, device).
    """

    def __init__(self, blocks: Sequence[Tensor]) -> None:
        blocks = list(blocks)
        if not blocks:
            raise ValueError("expected at least one gradient block")
        tasks = {b.shape[0] if b.dim() > 0 else None for b in blocks}
        if len(tasks) != 1 or None in tasks:
            raise ValueError(
                f"every block needs the same task axis, got {[tuple(b.shape) for b in blocks]}"
            )
        if not all(b.is_floating_point() for b in blocks):
            raise ValueError("expected float gradient blocks")
        self.blocks = blocks
        self.num_tasks = blocks[0].shape[0]
        self.num_params = sum(b[0].numel() for b in blocks)
        self.dtype, self.device = blocks[0].dtype, blocks[0].device

    def rows(self) -> list[Tensor]:
        """The blocks as 2-D views [T, P_k]."""
        return [b.reshape(self.num_tasks, -1) for b in self.blocks]

    def gramian(self) -> Tensor:
        """G Gᵀ in float64 on the CPU: the T x T input of every weighting's solver."""
        return self._gram_sum().to(device="cpu", dtype=torch.float64)

    def device_gramian(self) -> Tensor:
        """G Gᵀ in float64 on G's device (no host copy): the input of the device solvers.
        The same values as ``gramian`` (summed in G's dtype, then converted)."""
        return self._gram_sum().to(dtype=torch.float64)

    def _gram_sum(self) -> Tensor:
        return sum(r @ r.T for r in self.rows())  # type: ignore[return-value]

    def combine(self, weights: Tensor) -> list[Tensor]:
        """wᵀG as one direction block per parameter, each shaped like the parameter."""
        w = weights.to(device=self.device, dtype=self.dtype)
        return [(w @ r).view(b.shape[1:]) for r, b in zip(self.rows(), self.blocks, strict=True)]

    def finite_rows(self) -> Tensor:
        """A bool [T]: True where a task's gradient is entirely finite."""
        return torch.stack([torch.isfinite(r).all(dim=1) for r in self.rows()]).all(dim=0)

    def matrix(self) -> Tensor:
        """The flat [T, P] matrix (a copy, except for a single 2-D block)."""
        rows = self.rows()
        return rows[0] if len(rows) == 1 else torch.cat(rows, dim=1)


def as_task_gradients(G: Tensor | TaskGradients) -> TaskGradients:
    """Wrap a flat [T, P] tensor (validated, not copied) or pass blocks through."""
    if isinstance(G, TaskGradients):
        return G
    if not isinstance(G, Tensor) or G.dim() != 2 or not G.is_floating_point():
        got = tuple(G.shape) if isinstance(G, Tensor) else type(G).__name__
        raise ValueError(f"expected a float tensor of shape [T, P] (tasks x parameters), got {got}")
    if G.shape[0] == 0:
        raise ValueError("expected at least one task gradient, got shape [0, P]")
    return TaskGradients([G])


def all_finite(direction: Tensor | Sequence[Tensor]) -> bool:
    """True if every element of a direction (flat or per-parameter blocks) is finite."""
    parts = [direction] if isinstance(direction, Tensor) else list(direction)
    return bool(torch.stack([torch.isfinite(p).all() for p in parts]).all())
