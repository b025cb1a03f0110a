"""Pieces the loss-balancing methods share: a learned [T] vector with its own optimizer, and the
check that names the tasks whose losses are NaN/inf."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import Tensor

from mtrl.errors import MtrlError
from mtrl.surgery.aggregators.base import NonFiniteGradientError


def check_finite_losses(task_names: list[str] | None, **values: Tensor) -> None:
    """Raise NonFiniteGradientError naming the tasks where any of ``values`` ([T] each, e.g.
    ``losses=...``) is NaN/inf; one host sync when all are finite."""
    stacked = torch.stack(list(values.values()))
    if bool(torch.isfinite(stacked).all()):
        return
    bad = (~torch.isfinite(stacked)).any(dim=0).nonzero().flatten().tolist()
    names = ", ".join(task_names[i] if task_names else f"task {i}" for i in bad)
    raise NonFiniteGradientError(f"non-finite (NaN/inf) {' or '.join(values)} for {names}")


class LearnedTaskVector:
    """A learned [T] tensor with its own Adam optimizer, created on the first losses' device
    (T and dtype from them too), with its state for checkpoints."""

    def __init__(self, name: str, init: float, lr: float, weight_decay: float = 0.0) -> None:
        self.name, self.init, self.lr, self.weight_decay = name, init, lr, weight_decay
        self.values: Tensor | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._pending: dict[str, Any] | None = None

    def get(self, like: Tensor) -> Tensor:
        """The live [T] tensor (a leaf that ``step`` updates in place)."""
        if self.values is None:
            if self._pending is None:
                values = torch.full_like(like, self.init)
            else:
                values = self._pending["values"]
                if values.numel() != like.numel():
                    raise MtrlError(
                        f"{self.name} state holds {values.numel()} tasks, the losses {like.numel()}"
                    )
            self.values = values.detach().to(like).clone().requires_grad_()
            self.optimizer = torch.optim.Adam(
                [self.values],
                lr=self.lr,
                weight_decay=self.weight_decay,
                fused=like.device.type in ("cpu", "cuda"),  # one kernel: a fraction of the cost
            )
            if self._pending is not None:
                self.optimizer.load_state_dict(self._pending["optimizer"])
                self._pending = None
        return self.values

    def step(self, grad: Tensor) -> None:
        """One optimizer step along ``grad`` (``get`` must have been called)."""
        assert self.values is not None and self.optimizer is not None
        self.values.grad = grad
        self.optimizer.step()

    def state_dict(self) -> dict[str, Any] | None:
        if self._pending is not None:
            return copy.deepcopy(self._pending)
        if self.values is None or self.optimizer is None:
            return None
        # deep copies: the optimizer's state_dict holds its live (in-place updated) tensors
        state = {"values": self.values.detach(), "optimizer": self.optimizer.state_dict()}
        return copy.deepcopy(state)

    def load_state_dict(self, state: dict[str, Any] | None) -> None:
        self.values, self.optimizer = None, None
        self._pending = copy.deepcopy(state)
