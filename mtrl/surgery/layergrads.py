"""Per-task gradients of linear layers from one fused forward and backward.

A linear layer's weight gradient is a sum over samples of (input ⊗ output gradient). When the
batch is laid out task-major (N = T x B rows, task t owning rows t*B..t*B+B-1) and each task's
loss only sees its own rows, the output gradient of ``sum_t L_t`` at a row of task t is the
output gradient of ``L_t`` alone. So one backward of the loss sum *to the layer outputs*
(no weight gradients) and one batched product per layer, ``X_tᵀ D_t`` for every task at once,
give every task's weight gradient: the per-sample-gradient trick (Opacus, BackPACK) summed per
task instead of per sample. It costs about one ordinary backward, without vmap's overhead.

Layers declare how to do this through ``register_layer_rule``; a module whose parameters are
not all owned by layers with a rule uses the vmap engine instead (see ``covers``). The rules
write into one [T, P] matrix per network (parameters in ``named_parameters`` order), so the
aggregators' Gramian and combination are one product each (``TaskGradients.from_matrix``).

The per-task gradients are the largest tensors of an update (T times a network's size). On the
CPU a freshly allocated tensor of tens of MB comes from new pages, and writing it costs page
faults: at T = 50 the batched products took twice as long into fresh memory as into a reused
buffer (31 vs 15 ms for the critic's 400 x 400 layer). A ``Workspace`` keeps those buffers from
one update to the next.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from mtrl.surgery.taskgrads import TaskGradients

Alloc = Callable[[str, tuple[int, ...]], Tensor]
"""``alloc(name, shape)`` -> an uninitialised tensor of the output gradient's dtype and device.
For ``name`` one of the layer's parameters and ``shape`` [T, *its shape]: where that per-task
gradient belongs, a task-major view into the network's [T, P] gradient matrix (each task's part
contiguous, the tasks P apart), which the rule should write into and return; otherwise scratch
memory (reused across calls with a ``Workspace``)."""
LayerRule = Callable[[nn.Module, tuple[Any, ...], Tensor, int, Alloc], dict[str, Tensor]]
"""``rule(layer, inputs, output_grad, T, alloc)`` -> {local parameter name: gradient
[T, *shape]}."""

_RULES: dict[type[nn.Module], LayerRule] = {}


def register_layer_rule(layer_type: type[nn.Module]) -> Callable[[LayerRule], LayerRule]:
    """Declare how to form per-task parameter gradients of ``layer_type`` from its forward
    inputs and the gradient of its output (rows task-major: [..., T * B, features])."""

    def decorate(rule: LayerRule) -> LayerRule:
        _RULES[layer_type] = rule
        return rule

    return decorate


def _ruled_layers(module: nn.Module) -> dict[str, nn.Module]:
    return {
        name: layer
        for name, layer in module.named_modules()
        if type(layer) in _RULES and any(True for _ in layer.parameters(recurse=False))
    }


def covers(module: nn.Module) -> bool:
    """True if every trainable parameter of ``module`` belongs directly to a layer with a rule."""
    owned = {
        id(p) for layer in _ruled_layers(module).values() for p in layer.parameters(recurse=False)
    }
    return all(id(p) in owned for p in module.parameters() if p.requires_grad)


def task_rows(x: Tensor, tasks: int) -> Tensor:
    """View [..., N, F] as [..., T, B, F] (N = T * B, task-major rows)."""
    rows = x.shape[-2]
    if rows % tasks:
        raise ValueError(f"{rows} rows do not split into {tasks} tasks")
    return x.reshape(*x.shape[:-2], tasks, rows // tasks, x.shape[-1])


class Workspace:
    """Buffers kept from one call of ``layer_task_grads`` to the next: the network's [T, P]
    gradient matrix and the rules' scratch buffers (one per layer call and name); a buffer is
    replaced when its shape, dtype or device changes.

    The gradients of a call live in these buffers: they are valid until the next call with the
    same workspace (aggregators use G within ``aggregate`` and keep nothing of it).
    """

    def __init__(self) -> None:
        self._buffers: dict[str, Tensor] = {}

    def alloc(self, key: str, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """The buffer ``key`` shaped ``shape`` with ``like``'s dtype and device (uninitialised)."""
        buffer = self._buffers.get(key)
        if (
            buffer is None
            or buffer.shape != shape
            or buffer.dtype != like.dtype
            or buffer.device != like.device
        ):
            buffer = self._buffers[key] = like.new_empty(shape)
        return buffer

    def nbytes(self) -> int:
        """Memory held by the buffers."""
        return sum(b.numel() * b.element_size() for b in self._buffers.values())


def layer_task_grads(
    loss_fn: Callable[[Mapping[str, Tensor], Any], Any],
    module: nn.Module,
    batch: Any,
    tasks: int,
    has_aux: bool = False,
    workspace: Workspace | None = None,
) -> tuple[TaskGradients, Tensor, Any]:
    """Per-task gradients of ``module``'s parameters in one fused forward and backward.

    :param loss_fn: ``loss_fn(params, batch)`` -> per-task losses [T] (or ``(losses, aux)``),
        calling ``module`` (e.g. through ``functional_call``) on task-major rows.
    :param module: the network differentiated; ``covers(module)`` must hold.
    :param batch: passed to ``loss_fn`` as is.
    :param tasks: T.
    :param workspace: buffers to write the gradients into, reused across calls (None: fresh
        tensors; the CUDA caching allocator reuses memory by itself).
    :return: the gradients (blocks in ``module.named_parameters()`` order), the detached
        losses [T] and the auxiliary output (None without ``has_aux``).
    """
    layers = _ruled_layers(module)
    records: dict[str, list[tuple[tuple[Any, ...], Tensor]]] = {name: [] for name in layers}

    def recorder(name: str) -> Callable[..., None]:
        def hook(_layer: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> None:
            if output.requires_grad:
                records[name].append((inputs, output))

        return hook

    params = dict(module.named_parameters())
    handles = [layer.register_forward_hook(recorder(name)) for name, layer in layers.items()]
    try:
        out = loss_fn(params, batch)
    finally:
        for handle in handles:
            handle.remove()
    losses, aux = (out[0], out[1]) if has_aux else (out, None)
    outputs = [output for recs in records.values() for _, output in recs]
    output_grads = iter(torch.autograd.grad(losses.sum(), outputs, allow_unused=True))
    like = next(iter(params.values())).detach()  # the gradients' dtype and device
    size = sum(p.numel() for p in params.values())
    matrix = (
        workspace.alloc("matrix", (tasks, size), like)
        if workspace is not None
        else like.new_empty((tasks, size))
    )
    G = TaskGradients.from_matrix(matrix, [p.shape for p in params.values()])
    regions = dict(zip(params, G.blocks, strict=True))
    written: set[str] = set()
    for name, recs in records.items():
        layer = layers[name]
        for call, (inputs, _output) in enumerate(recs):
            d = next(output_grads)
            if d is None:
                continue
            names = [local for local, _ in layer.named_parameters(recurse=False)]
            keys = {local: f"{name}.{local}" if name else local for local in names}
            # a layer's first call writes into the matrix; a later one into scratch, then adds
            targets = {local: regions[key] for local, key in keys.items() if key not in written}
            alloc = _allocator(workspace, f"{name}#{call}", d, targets)
            for local, g in _RULES[type(layer)](layer, inputs, d.detach(), tasks, alloc).items():
                region = regions[keys[local]]
                if keys[local] in written:
                    region.add_(g)
                elif not _same_memory(g, region):
                    region.copy_(g)
                written.add(keys[local])
    for key, region in regions.items():
        if key not in written:
            region.zero_()
    return G, losses.detach(), (aux.detach() if aux is not None else None)


def _same_memory(a: Tensor, b: Tensor) -> bool:
    return a.data_ptr() == b.data_ptr() and a.shape == b.shape and a.stride() == b.stride()


def _allocator(
    workspace: Workspace | None, prefix: str, like: Tensor, targets: Mapping[str, Tensor]
) -> Alloc:
    def alloc(name: str, shape: tuple[int, ...]) -> Tensor:
        target = targets.get(name)
        if target is not None and tuple(target.shape) == tuple(shape):
            return target
        if workspace is None:
            return like.new_empty(shape)
        return workspace.alloc(f"{prefix}.{name}", tuple(shape), like)

    return alloc


@register_layer_rule(nn.Linear)
def _linear_rule(
    layer: nn.Module, inputs: tuple[Any, ...], d: Tensor, tasks: int, alloc: Alloc
) -> dict:
    x = task_rows(inputs[0].detach().reshape(-1, inputs[0].shape[-1]), tasks)
    dt = task_rows(d.reshape(-1, d.shape[-1]), tasks)
    weight = alloc("weight", (tasks, dt.shape[-1], x.shape[-1]))
    out = {"weight": torch.bmm(dt.transpose(1, 2), x, out=weight)}
    if layer.bias is not None:
        out["bias"] = torch.sum(dt, dim=1, out=alloc("bias", (tasks, dt.shape[-1])))
    return out
