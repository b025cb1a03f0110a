"""The aggregator interface: a [T, P] matrix of per-task gradients -> one direction [P]."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from mtrl.errors import MtrlError


class NonFiniteGradientError(MtrlError, FloatingPointError):
    """A task's gradient holds NaN or inf (usually a diverged loss)."""


@dataclass
class Aggregation:
    """The result of one aggregation.

    :param direction: the update direction [P].
    :param weights: task weights [T] with ``direction == weights @ G`` (None if not a weighting).
    :param gram: the T x T Gramian G Gᵀ when the method computed it (reused by diagnostics).
    """

    direction: Tensor
    weights: Tensor | None = None
    gram: Tensor | None = None


def check_shape(G: Tensor) -> None:
    """Raise ValueError unless G is a float tensor [T, P] with T >= 1."""
    if not isinstance(G, Tensor) or G.dim() != 2 or not G.is_floating_point():
        got = tuple(G.shape) if isinstance(G, Tensor) else type(G).__name__
        raise ValueError(f"expected a float tensor of shape [T, P] (tasks x parameters), got {got}")
    if G.shape[0] == 0:
        raise ValueError("expected at least one task gradient, got shape [0, P]")


def check_gradients(G: Tensor, task_names: list[str] | None = None) -> None:
    """Raise ValueError on a bad shape and NonFiniteGradientError naming tasks with NaN/inf."""
    check_shape(G)
    bad = (~torch.isfinite(G).all(dim=1)).nonzero().flatten().tolist()
    if bad:
        names = [task_names[i] if task_names else f"task {i}" for i in bad]
        raise NonFiniteGradientError(f"non-finite (NaN/inf) gradient for {', '.join(names)}")


def gramian(G: Tensor) -> Tensor:
    """G Gᵀ in float64 on the CPU: the T x T input of every weighting's solver."""
    return (G @ G.T).to(device="cpu", dtype=torch.float64)


class Aggregator:
    """Base class: subclasses implement ``aggregate``; ``__call__`` returns the direction.

    Class attributes describe the method to the engine and the CLI:
    ``needs_grads`` (False for loss-balancing methods that only weight the losses),
    ``stochastic`` (draws random numbers; seeded by ``seed``).
    Aggregators that keep state across updates override ``state_dict``/``load_state_dict``.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    needs_grads: ClassVar[bool] = True
    stochastic: ClassVar[bool] = False

    check_finite: bool = True
    task_names: list[str] | None = None

    def __call__(self, G: Tensor) -> Tensor:
        return self.aggregate(G).direction

    def aggregate(self, G: Tensor) -> Aggregation:
        """Validate G and combine it into one direction (T=1 returns that gradient)."""
        check_shape(G)
        if G.shape[0] == 1:
            result = Aggregation(G[0].clone(), torch.ones(1, dtype=G.dtype, device=G.device))
        else:
            result = self._aggregate(G)
        # A NaN/inf in G reaches the direction (or the Gramian, checked by weightings before
        # solving), so one pass over [P] replaces a pass over [T, P]; the slow path names tasks.
        if self.check_finite and not bool(torch.isfinite(result.direction).all()):
            self.raise_non_finite(G)
        return result

    def raise_non_finite(self, G: Tensor) -> None:
        """Raise NonFiniteGradientError naming the tasks whose gradients hold NaN/inf."""
        check_gradients(G, self.task_names)
        raise NonFiniteGradientError("the aggregated direction overflowed (every task is finite)")

    def _aggregate(self, G: Tensor) -> Aggregation:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """State that must survive a checkpoint (RNG state, running estimates)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.options().items())
        return f"{type(self).__name__}({opts})"

    def options(self) -> dict[str, Any]:
        """The options this aggregator was built with."""
        return {}


class Weighting(Aggregator):
    """An aggregator whose direction is ``weights @ G`` with weights computed from the Gramian."""

    def _aggregate(self, G: Tensor) -> Aggregation:
        gram = gramian(G)
        if self.check_finite and not bool(torch.isfinite(gram).all()):
            self.raise_non_finite(G)
        weights = self.weights(gram).to(device=G.device, dtype=G.dtype)
        return Aggregation(weights @ G, weights, gram)

    def weights(self, gram: Tensor) -> Tensor:
        """Task weights [T] (float64, CPU) from the T x T Gramian."""
        raise NotImplementedError
