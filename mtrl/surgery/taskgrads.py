"""Per-task gradients as a [T, P] matrix kept in column blocks, one block per parameter.

The vectorised engine produces one [T, *shape] gradient per parameter. Concatenating them into
a flat [T, P] matrix costs a full copy (as much as a third of the backward for MT-SAC sized
critics at T=50), and writing a direction back into ``.grad`` would split it again. Every
aggregator only needs the Gramian G Gᵀ and combinations wᵀG, which blocks give directly.

Where the gradients were written straight into one [T, P] matrix (``from_matrix``: the layer
products of ``layergrads`` do this), the blocks are views of its column ranges, and the Gramian
and a combination are one product each instead of one per block: on a GPU, where an update
replayed from a CUDA graph costs about a kernel launch per op, that is about 25 launches fewer
per MT-SAC update.

A block need not have its task axis outermost in memory: an ensemble layer's per-task
gradients can come out of one batched product member-major ([E, T, ...] in memory, viewed as
[T, E, ...]), and transposing them would copy the largest tensors of the update. Each block is
read through a view [C, T, K] (C = 1 for a task-major block or a column block of a matrix,
C = E for a member-major one).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch
from torch import Tensor

SMALL_GRAM_TASKS = 16
"""Below this many tasks the CPU BLAS computes one [T, K] x [K, T] product poorly (at T = 10,
K = 320,000: 2.8 ms on one thread whatever the thread count, against 0.55 ms as a batch of
products over chunks of K on 2 threads; from T = 16 on the two are equal, see BENCHMARKS.md)."""
GRAM_CHUNK = 4096
"""Elements of K per product in that batch."""


def task_view(block: Tensor) -> Tensor:
    """``block`` [T, *shape] as [C, T, K]: a view where each task's gradient is contiguous (a
    column block of a [T, P] matrix) or the task axis is second in memory, else a contiguous
    copy."""
    tasks = block.shape[0]
    if block.is_contiguous():
        return block.view(1, tasks, -1)
    if block.dim() > 1 and block[0].is_contiguous():
        return block.flatten(1).unsqueeze(0)
    if block.dim() > 1 and block.movedim(0, 1).is_contiguous():
        return block.movedim(0, 1).reshape(block.shape[1], tasks, -1)
    return block.contiguous().view(1, tasks, -1)


def _gram(rows: Tensor) -> Tensor:
    """rows rowsᵀ for a [T, K] matrix whose rows are contiguous."""
    tasks, size = rows.shape
    chunks = size // GRAM_CHUNK
    if not _chunked(rows.device, tasks, size):
        return rows @ rows.T
    head = rows[:, : chunks * GRAM_CHUNK].view(tasks, chunks, GRAM_CHUNK).transpose(0, 1)
    gram = torch.bmm(head, head.transpose(1, 2)).sum(dim=0)
    tail = rows[:, chunks * GRAM_CHUNK :]
    return gram + tail @ tail.T if tail.shape[1] else gram


def _view_gram(view: Tensor) -> Tensor:
    """The Gramian of a block read as [C, T, K]: Σ over its parts of rows rowsᵀ."""
    return functools.reduce(torch.add, (_gram(rows) for rows in view))


def _chunked(device: torch.device, tasks: int, size: int) -> bool:
    """Whether a [T, K] Gramian is computed as a batch of products over chunks of K."""
    return device.type == "cpu" and tasks < SMALL_GRAM_TASKS and size >= 2 * GRAM_CHUNK


class TaskGradients:
    """A [T, P] matrix of per-task gradients stored as blocks [T, *shape_k], never concatenated.

    :param blocks: per-parameter gradients with the task axis first (same T, dtype, device).
    :param matrix: the [T, P] matrix whose consecutive column blocks the blocks are views of,
        when they were written into one (``from_matrix``): its Gramian and combinations are
        then one product each, where blocks take one per block.
    """

    def __init__(self, blocks: Sequence[Tensor], matrix: Tensor | None = None) -> None:
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
        self._views = [task_view(b) for b in blocks]
        self.num_tasks = blocks[0].shape[0]
        self.num_params = sum(b[0].numel() for b in blocks)
        self.dtype, self.device = blocks[0].dtype, blocks[0].device
        if matrix is not None and matrix.shape != (self.num_tasks, self.num_params):
            raise ValueError(
                f"matrix {tuple(matrix.shape)} does not hold blocks of {self.num_params}"
            )
        self._matrix = matrix

    @classmethod
    def from_matrix(cls, matrix: Tensor, shapes: Sequence[Sequence[int]]) -> TaskGradients:
        """Blocks of the given parameter shapes read as views of consecutive columns of a
        [T, P] matrix (P the shapes' total size)."""
        tasks, blocks, start = matrix.shape[0], [], 0
        for shape in shapes:
            size = math.prod(shape)
            blocks.append(matrix[:, start : start + size].view(tasks, *shape))
            start += size
        return cls(blocks, matrix)

    def rows(self) -> list[Tensor]:
        """The blocks as 2-D [T, P_k]: views of task-major blocks, copies of member-major ones."""
        return [b.reshape(self.num_tasks, -1) for b in self.blocks]

    def gramian(self) -> Tensor:
        """G Gᵀ in float64 on the CPU: the T x T input of every weighting's solver."""
        return self._gram_sum().to(device="cpu", dtype=torch.float64)

    def device_gramian(self) -> Tensor:
        """G Gᵀ in float64 on G's device (no host copy): the input of the device solvers.
        The same values as ``gramian`` (summed in G's dtype, then converted)."""
        return self._gram_sum().to(dtype=torch.float64)

    def _gram_sum(self) -> Tensor:
        """Σ over blocks and parts of rows rowsᵀ, accumulated in place: one batched product
        per block (a kernel each on a GPU, where a stack of per-block Gramians took four), or
        one product of the matrix."""
        if self._matrix is not None:
            return _gram(self._matrix)
        total = torch.zeros(self.num_tasks, self.num_tasks, dtype=self.dtype, device=self.device)
        for view in self._views:
            if _chunked(view.device, self.num_tasks, view.shape[2]):
                total += _view_gram(view)
            else:
                total.addbmm_(view, view.mT)
        return total

    def block_gramians(self) -> Tensor:
        """Each block's own Gramian, [num_blocks, T, T] in G's dtype and on its device."""
        return torch.stack([_view_gram(view) for view in self._views])

    def views(self) -> list[Tensor]:
        """The blocks as [C, T, K] views (C > 1 for member-major blocks, see ``task_view``):
        column k of part c is element c * K + k of the flattened parameter."""
        return list(self._views)

    def combine(self, weights: Tensor) -> list[Tensor]:
        """wᵀG as one direction block per parameter, each shaped like the parameter; weights
        [T], or [num_blocks, T] for one weighting per block."""
        w = weights.to(device=self.device, dtype=self.dtype)
        if self._matrix is not None and w.dim() == 1:
            pieces = (w @ self._matrix).split([b[0].numel() for b in self.blocks])
            return [piece.view(b.shape[1:]) for piece, b in zip(pieces, self.blocks, strict=True)]
        per_block = w if w.dim() == 2 else w.expand(len(self.blocks), -1)
        return [
            torch.matmul(wk, view).view(b.shape[1:])
            for wk, view, b in zip(per_block, self._views, self.blocks, strict=True)
        ]

    def finite_rows(self) -> Tensor:
        """A bool [T]: True where a task's gradient is entirely finite."""
        return torch.stack([torch.isfinite(v).all(dim=2).all(dim=0) for v in self._views]).all(0)

    def matrix(self) -> Tensor:
        """The flat [T, P] matrix (a copy, except for a single 2-D block or blocks written
        into one matrix)."""
        if self._matrix is not None:
            return self._matrix
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
    # A sum is finite unless an element is NaN/inf or it overflowed: one cheap reduction per
    # block (isfinite costs five passes), and the elementwise check only when the sum is not.
    if bool(torch.isfinite(torch.stack([p.sum(dtype=torch.float64) for p in parts]).sum())):
        return True
    return bool(torch.stack([torch.isfinite(p).all() for p in parts]).all())
