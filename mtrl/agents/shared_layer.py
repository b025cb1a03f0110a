"""Per-task gradient norms of one layer from a single fused backward (for GradNorm).

The samples of a [T, B] batch run through the network as T * B rows, task-major, so each task's
gradient of a linear layer is the sum over its rows of ``x_bᵀ δ_b`` (input times the gradient at
the output). For a narrow layer (an output layer) that sum is formed directly, [T, in, out];
for a wide one its squared norm ``sum_{b,c} (x_b · x_c)(δ_b · δ_c)`` comes from two B x B Gram
matrices per task instead: whichever costs fewer operations.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn


class LayerGradNorms:
    """Hooks ``layer`` (an ``EnsembleLinear``) during one forward/backward and gives the norms of
    each task's gradient of its weight and bias, summed over ensemble members.

    Use as a context manager around the loss's forward and backward, then call ``norms(T)``.
    """

    def __init__(self, layer: nn.Module) -> None:
        self.layer = layer
        self.inputs: Tensor | None = None
        self.output_grads: Tensor | None = None
        self._handle: Any = None

    def __enter__(self) -> LayerGradNorms:
        self._handle = self.layer.register_forward_hook(self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        self._handle.remove()

    def _record(self, module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> None:
        if not output.requires_grad:  # a forward outside the differentiated loss
            return
        self.inputs = args[0].detach()
        output.register_hook(self._record_grad)

    def _record_grad(self, grad: Tensor) -> None:
        self.output_grads = grad.detach()

    def norms(self, tasks: int) -> Tensor:
        """[T] norms of each task's gradient of the layer's parameters (weight and bias)."""
        if self.inputs is None or self.output_grads is None:
            raise RuntimeError("the hooked layer took no part in the backward")
        grad = self.output_grads  # [E, N, out]
        members, rows = grad.shape[0], grad.shape[1]
        x = self.inputs if self.inputs.dim() == 3 else self.inputs.expand(members, -1, -1)
        batch = rows // tasks
        x = x.reshape(members, tasks, batch, -1)
        d = grad.reshape(members, tasks, batch, -1)
        bias = d.sum(dim=2).pow(2).sum(dim=-1)  # [E, T]
        if x.shape[-1] * d.shape[-1] <= batch * (x.shape[-1] + d.shape[-1]):
            weight = (x.transpose(-1, -2) @ d).pow(2).sum(dim=(-1, -2))  # [E, T, in, out] summed
        else:
            gram_x = x @ x.transpose(-1, -2)  # [E, T, B, B]
            gram_d = d @ d.transpose(-1, -2)
            weight = (gram_x * gram_d).sum(dim=(-1, -2))
        return (weight + bias).sum(dim=0).clamp_min(0.0).sqrt()
