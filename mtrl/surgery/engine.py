"""Per-task gradients in one vectorised pass, and writing a direction back into ``.grad``.

A per-task gradient only touches its own task's samples, so vmapping the *per-task loss
function* over the task axis of the batch costs about one ordinary backward. Backpropagating T
one-hot vectors through one shared graph (or looping ``autograd.grad`` over T losses) touches
every sample T times; the loop is kept here only as the reference for tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

import torch
from torch import Tensor
from torch.utils._pytree import tree_flatten, tree_map

from mtrl.surgery.taskgrads import TaskGradients

Params = Mapping[str, Tensor]
LossFn = Callable[[Params, Any], Tensor]
Mode = Literal["vmap", "loop"]


def num_tasks(batch: Any) -> int:
    """The size of the leading task axis shared by every tensor in ``batch``."""
    leaves = [x for x in tree_flatten(batch)[0] if isinstance(x, Tensor)]
    if not leaves:
        raise ValueError("the batch holds no tensors")
    sizes = {x.shape[0] if x.dim() > 0 else None for x in leaves}
    if len(sizes) != 1 or None in sizes:
        shapes = [tuple(x.shape) for x in leaves]
        raise ValueError(
            f"every batch tensor needs the same leading task axis, got shapes {shapes}"
        )
    return sizes.pop()


def flatten_grads(grads: Mapping[str, Tensor], names: Iterable[str]) -> Tensor:
    """Concatenate per-parameter gradients [T, *shape] into one matrix [T, P] in ``names`` order."""
    parts = [grads[n].reshape(grads[n].shape[0], -1) for n in names]
    return torch.cat(parts, dim=1)


def per_task_grads(
    loss_fn: LossFn,
    params: Params,
    batch: Any,
    *,
    mode: Mode = "vmap",
    chunk_size: int | None = None,
    randomness: Literal["different", "same", "error"] = "different",
    has_aux: bool = False,
    return_losses: bool = False,
    flat: bool = True,
) -> Any:
    """Gradients of each task's loss with respect to ``params``, stacked as G [T, P].

    :param loss_fn: ``loss_fn(params, task_batch)`` returns one task's scalar loss
        (or ``(loss, aux)`` when ``has_aux``); ``params`` is a dict name -> tensor as
        ``torch.func.functional_call`` takes it.
    :param params: the parameters to differentiate; G's columns follow this dict's order.
    :param batch: a tensor or a tuple/dict of tensors whose first axis is the task axis [T, ...].
    :param mode: ``"vmap"`` (one vectorised pass) or ``"loop"`` (one backward per task, reference).
    :param chunk_size: in vmap mode, tasks processed at once (bounds memory); None for all.
    :param randomness: vmap's treatment of random ops inside ``loss_fn`` (per task by default).
    :param has_aux: ``loss_fn`` returns ``(loss, aux)``; aux is returned stacked over tasks.
    :param return_losses: also return the per-task losses [T].
    :param flat: return G as one [T, P] tensor; False returns ``TaskGradients`` (one block per
        parameter, no concatenation copy), which aggregators and ``write_grads`` take as well.
    :return: G, or a tuple ``(G, losses?, aux?)`` in that order when asked for.
    """
    names = list(params)
    detached = {n: p.detach() for n, p in params.items()}
    num_tasks(batch)  # validates the task axis
    if mode == "vmap":
        grads, losses, aux = _vmap_grads(loss_fn, detached, batch, chunk_size, randomness, has_aux)
    elif mode == "loop":
        grads, losses, aux = _loop_grads(loss_fn, detached, batch, has_aux)
    else:
        raise ValueError(f"mode must be 'vmap' or 'loop', got {mode!r}")
    G = flatten_grads(grads, names) if flat else TaskGradients([grads[n] for n in names])
    out: tuple[Any, ...] = (G,)
    if return_losses:
        out += (losses,)
    if has_aux:
        out += (aux,)
    return out if len(out) > 1 else G


def _vmap_grads(loss_fn, params, batch, chunk_size, randomness, has_aux):
    def task_loss(p, task_batch):
        result = loss_fn(p, task_batch)
        if has_aux:
            loss, aux = result
            return loss, (loss.detach(), aux)
        return result, (result.detach(),)

    grad_fn = torch.func.grad(task_loss, has_aux=True)
    batched = torch.func.vmap(
        grad_fn, in_dims=(None, 0), chunk_size=chunk_size, randomness=randomness
    )
    # grad is a function transform: it ignores the outer no_grad, which only stops autograd
    # from recording a second graph over tensors the loss captures from outside (e.g. a critic).
    with torch.no_grad():
        grads, extra = batched(params, batch)
    return grads, extra[0], (extra[1] if has_aux else None)


def _loop_grads(loss_fn, params, batch, has_aux):
    tasks = num_tasks(batch)
    leaves = {n: p.requires_grad_(True) for n, p in params.items()}
    per_task: list[dict[str, Tensor]] = []
    losses, auxes = [], []
    for t in range(tasks):
        task_batch = tree_map(lambda x, t=t: x[t] if isinstance(x, Tensor) else x, batch)
        result = loss_fn(leaves, task_batch)
        loss, aux = result if has_aux else (result, None)
        grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        per_task.append(
            {
                n: torch.zeros_like(p) if g is None else g
                for (n, p), g in zip(leaves.items(), grads, strict=True)
            }
        )
        losses.append(loss.detach())
        auxes.append(aux)
    stacked = {n: torch.stack([g[n] for g in per_task]) for n in leaves}
    aux_out = None
    if has_aux:
        aux_out = tree_map(lambda *xs: torch.stack([x.detach() for x in xs]), *auxes)
    return stacked, torch.stack(losses), aux_out


def write_grads(
    params: Params | Iterable[Tensor],
    direction: Tensor | Sequence[Tensor],
    accumulate: bool = False,
    adopt: bool = False,
) -> None:
    """Write an aggregated direction into the parameters' ``.grad`` so any optimizer can step.

    :param params: the same parameters (dict or iterable, same order) the gradients were taken of.
    :param direction: a flat [P] tensor (P = total number of elements), or one tensor per
        parameter shaped like it (what aggregators return for ``TaskGradients``).
    :param accumulate: add to existing ``.grad`` instead of replacing it.
    :param adopt: a parameter without ``.grad`` takes its direction block itself rather than a
        copy (for blocks nothing else holds, ``Aggregation.owned``: one copy kernel fewer each).
    """
    tensors = list(params.values()) if isinstance(params, Mapping) else list(params)
    if isinstance(direction, Tensor):
        pieces = _split_flat(direction, tensors)
    else:
        pieces = list(direction)
        shapes = [tuple(p.shape) for p in tensors]
        if [tuple(d.shape) for d in pieces] != shapes:
            raise ValueError(f"direction blocks must have the parameters' shapes {shapes}")
    for p, piece in zip(tensors, pieces, strict=True):
        if p.grad is None:
            p.grad = piece.detach() if adopt else piece.detach().clone()
        elif accumulate:
            p.grad.add_(piece)
        else:
            p.grad.copy_(piece)


def _split_flat(direction: Tensor, tensors: list[Tensor]) -> list[Tensor]:
    total = sum(p.numel() for p in tensors)
    if direction.dim() != 1 or direction.numel() != total:
        raise ValueError(
            f"direction must have shape [{total}] (the parameters' total size), "
            f"got {list(direction.shape)}"
        )
    return [
        d.view_as(p)
        for d, p in zip(direction.split([p.numel() for p in tensors]), tensors, strict=True)
    ]
