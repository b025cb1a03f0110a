"""Ensembles of MLPs with optional per-task output heads, and the tanh-Gaussian actor.

Two initialisations (``agent.init``): ``torch`` (``nn.Linear``'s default, U(±1/sqrt(fan_in))
for weights and biases) and ``metaworld`` (the Meta-World+ reference, rainx0r/metaworld-
algorithms: He-uniform hidden weights with zero biases, and a small uniform output layer,
U(±1e-3) for the actor and U(±3e-3) for the critic, weights and biases).
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtrl.agents.registry import build_network, register_network
from mtrl.surgery.layergrads import Alloc, register_layer_rule, task_rows

InitScheme = Literal["torch", "metaworld"]
ACTOR_HEAD_BOUND = 1e-3
CRITIC_HEAD_BOUND = 3e-3


class EnsembleLinear(nn.Module):
    """E independent linear layers applied at once: [N, in] or [E, N, in] -> [E, N, out]."""

    def __init__(self, members: int, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, out_features)) if bias else None
        bound = 1.0 / math.sqrt(in_features)  # nn.Linear's default initialisation
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        out = torch.matmul(x, self.weight)
        return out if self.bias is None else out + self.bias

    def init_he_uniform(self) -> None:
        """Meta-World+'s hidden layers: He-uniform weights (fan_in = inputs), zero biases."""
        with torch.no_grad():
            bound = math.sqrt(6.0 / self.weight.shape[-2])
            nn.init.uniform_(self.weight, -bound, bound)
            if self.bias is not None:
                nn.init.zeros_(self.bias)


def linear_stack(members: int, sizes: list[int]) -> nn.ModuleList:
    """EnsembleLinear layers from ``sizes[0]`` through ``sizes[1:]`` (no activations)."""
    return nn.ModuleList(EnsembleLinear(members, a, b) for a, b in itertools.pairwise(sizes))


def run_stack(layers: nn.ModuleList, x: Tensor) -> Tensor:
    """Apply ``layers`` with a ReLU between them and none after the last."""
    for i, layer in enumerate(layers):
        x = layer(x)
        if i < len(layers) - 1:
            x = F.relu(x)
    return x


def repeat_per_set(h: Tensor, sets: int) -> Tensor:
    """[E, N, D] -> [E * K, N, D]: member e's input for each of its K parameter sets (experts,
    modules), laid out as ``linear_stack(members * K, ...)`` expects (e * K .. e * K + K - 1)."""
    return h[:, None].expand(-1, sets, -1, -1).flatten(0, 1)


def mix_sets(out: Tensor, weights: Tensor) -> Tensor:
    """Σ_k weights[e, n, k] out[e * K + k, n]: each member's K outputs [E * K, N, D] mixed by its
    weights [E, N, K] into [E, N, D]."""
    members, sets = weights.shape[0], weights.shape[-1]
    return torch.einsum("eknd,enk->end", out.unflatten(0, (members, sets)), weights)


def drop_task_columns(x: Tensor, task_columns: tuple[int, int]) -> Tensor:
    """``x`` without the one-hot task id at columns ``task_columns = (start, stop)``."""
    start, stop = task_columns
    return torch.cat([x[..., :start], x[..., stop:]], dim=-1)


def init_uniform_(layer: nn.Module, bound: float) -> None:
    """Weights and biases of an output layer (or every task head) from U(±bound)."""
    with torch.no_grad():
        nn.init.uniform_(layer.weight, -bound, bound)
        nn.init.uniform_(layer.bias, -bound, bound)


def init_flax_embedding_(layer: EnsembleLinear) -> None:
    """A task-embedding layer (one-hot -> features, weight [E, T, F]) as flax's ``nn.Embed``
    initialises its table: variance scaling 1 / F (jax counts the feature axis as the fan-in of
    a [T, F] table with ``out_axis=0``), truncated normal at two standard deviations."""
    # flax's truncated normal: the std of the untruncated draw is divided by 0.8796
    std = math.sqrt(1.0 / layer.weight.shape[-1]) / 0.87962566103423978
    with torch.no_grad():
        nn.init.trunc_normal_(layer.weight, 0.0, std, -2 * std, 2 * std)


def _per_task_products(x: Tensor, d: Tensor, tasks: int, out: Tensor) -> Tensor:
    """Σ_b x_b ⊗ d_b per member and task: [E, T, in, out] from inputs [N, in] or [E, N, in] and
    output gradients [E, N, out], written into ``out`` (any strides with contiguous [in, out]
    matrices): one batched product where members and tasks merge into one batch axis of
    ``out``, else one per member (e.g. ``out`` a view of a task-major gradient matrix)."""
    members, rows = d.shape[0], d.shape[1] // tasks
    dt = d.reshape(members * tasks, rows, -1)
    if x.dim() == 3:
        xt = x.reshape(members * tasks, rows, -1).transpose(1, 2)
        if out.stride(0) == tasks * out.stride(1):
            torch.bmm(xt, dt, out=out.view(members * tasks, *out.shape[2:]))
            return out
        per_member = [xt[m * tasks : (m + 1) * tasks] for m in range(members)]
    else:
        per_member = [task_rows(x, tasks).transpose(1, 2)] * members  # [T, in, B], shared
    for member, xm in enumerate(per_member):
        torch.bmm(xm, dt[member * tasks : (member + 1) * tasks], out=out[member])
    return out


def _per_task_bias(d: Tensor, tasks: int, out: Tensor | None = None) -> Tensor:
    """Σ_b d_b per member and task: [E, T, out] from output gradients [E, N, out] (into
    ``out`` if given)."""
    return torch.sum(task_rows(d, tasks), dim=2, out=out)


def _task_major(param: Tensor, tasks: int) -> tuple[int, ...]:
    """The shape [T, *shape] of per-task gradients of ``param``."""
    return (tasks, *param.shape)


@register_layer_rule(EnsembleLinear)
def _ensemble_linear_rule(
    layer: nn.Module, inputs: tuple[Tensor, ...], d: Tensor, tasks: int, alloc: Alloc
) -> dict[str, Tensor]:
    """Per-task gradients [T, E, in, out] and [T, E, 1, out] (inputs [N, in] or [E, N, in]),
    written member by member into the task-major destinations ``alloc`` gives."""
    weight = alloc("weight", _task_major(layer.weight, tasks))
    _per_task_products(inputs[0].detach(), d, tasks, weight.transpose(0, 1))
    grads = {"weight": weight}
    if layer.bias is not None:
        bias = alloc("bias", _task_major(layer.bias, tasks))
        _per_task_bias(d, tasks, out=bias.transpose(0, 1)[:, :, 0])
        grads["bias"] = bias
    return grads


class TaskHeads(nn.Module):
    """One output layer per task and ensemble member, picked by the one-hot task id.

    Every head is computed and masked by the one-hot (no indexing), which keeps the forward
    pass vmap-friendly; only the selected head receives gradient.
    """

    def __init__(self, members: int, tasks: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(members, tasks, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(members, 1, tasks, out_features))
        bound = 1.0 / math.sqrt(in_features)
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor, one_hot: Tensor) -> Tensor:
        out = torch.einsum("eni,etio->ento", x, self.weight) + self.bias
        return (out * one_hot[None, :, :, None]).sum(dim=2)


@register_layer_rule(TaskHeads)
def _task_heads_rule(
    layer: nn.Module, inputs: tuple[Tensor, ...], d: Tensor, tasks: int, alloc: Alloc
) -> dict[str, Tensor]:
    """Task t's rows only reach their own head: its gradient fills head k_t of block t, where
    k_t is the one-hot id of the task's rows (every row of a task shares it)."""
    head = task_rows(inputs[1].detach(), tasks)[:, 0].argmax(dim=-1)  # [T]
    rows = torch.arange(tasks, device=d.device)
    x = inputs[0].detach()
    members, out_features = layer.weight.shape[0], layer.weight.shape[-1]
    products = alloc("products", (members, tasks, x.shape[-1], out_features))
    weight = alloc("weight", _task_major(layer.weight, tasks)).zero_()
    weight.transpose(0, 1)[:, rows, head] = _per_task_products(x, d, tasks, products)
    bias = alloc("bias", _task_major(layer.bias, tasks)).zero_()
    bias.transpose(0, 1)[:, rows, 0, head] = _per_task_bias(d, tasks)
    return {"weight": weight, "bias": bias}


class EnsembleMLP(nn.Module):
    """E MLPs with ReLU hidden layers, evaluated together; output [E, N, out].

    :param members: ensemble size E.
    :param in_features: input size (observation, including the one-hot task id at its end).
    :param hidden: hidden layer sizes.
    :param out_features: output size.
    :param tasks: with ``multihead``, the number of tasks T (the last T inputs are the one-hot).
    :param multihead: use a separate output layer per task.
    """

    def __init__(
        self,
        members: int,
        in_features: int,
        hidden: list[int],
        out_features: int,
        tasks: int,
        multihead: bool = False,
    ) -> None:
        super().__init__()
        sizes = [in_features, *hidden]
        self.trunk = linear_stack(members, sizes)
        self.tasks = tasks
        self.multihead = multihead
        if multihead:
            self.head: nn.Module = TaskHeads(members, tasks, sizes[-1], out_features)
        else:
            self.head = EnsembleLinear(members, sizes[-1], out_features)

    def init_metaworld(self, head_bound: float) -> None:
        """Meta-World+'s initialisation: He-uniform hidden weights, zero hidden biases, and the
        output layer (every head) drawn from U(±head_bound)."""
        for layer in self.trunk:
            layer.init_he_uniform()
        init_uniform_(self.head, head_bound)

    def forward(self, x: Tensor, one_hot: Tensor | None = None) -> Tensor:
        h = x
        for layer in self.trunk:
            h = F.relu(layer(h))
        if self.multihead:
            return self.head(h, one_hot if one_hot is not None else x[..., -self.tasks :])
        return self.head(h)

    def last_shared_layer(self) -> nn.Module:
        """The output layer of a single-head network, the last hidden layer of a multi-head one."""
        return self.trunk[-1] if self.multihead else self.head


@register_network("mlp")
class MLPNetwork(EnsembleMLP):
    """ReLU MLP on the observation with its one-hot task id (MT-SAC; `agent.hidden` sizes)."""

    heads_per_task = False

    def __init__(
        self,
        members: int,
        in_features: int,
        hidden: list[int],
        out_features: int,
        tasks: int,
        task_columns: tuple[int, int],
    ) -> None:
        super().__init__(members, in_features, hidden, out_features, tasks, self.heads_per_task)


@register_network("multihead")
class MultiHeadNetwork(MLPNetwork):
    """The MLP trunk with one output layer per task, picked by the one-hot task id."""

    heads_per_task = True


class Critic(nn.Module):
    """An ensemble of Q(s, a) networks: [N, obs] and [N, act] -> Q values [E, N].

    :param network: the architecture (``agent.network``; ``multihead=True`` is the same as
        ``network="multihead"``), with its ``network_options``.
    """

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: list[int],
        tasks: int,
        members: int = 2,
        multihead: bool = False,
        init: InitScheme = "torch",
        network: str = "mlp",
        network_options: dict | None = None,
    ) -> None:
        super().__init__()
        self.tasks = tasks
        self.net = build_network(
            "multihead" if multihead else network,
            network_options or {},
            members=members,
            in_features=obs_dim + act_dim,
            hidden=hidden,
            out_features=1,
            tasks=tasks,
            task_columns=(obs_dim - tasks, obs_dim),
        )
        if init == "metaworld":
            self.net.init_metaworld(CRITIC_HEAD_BOUND)

    def forward(self, obs: Tensor, action: Tensor) -> Tensor:
        one_hot = obs[..., -self.tasks :]
        return self.net(torch.cat([obs, action], dim=-1), one_hot).squeeze(-1)


class Actor(nn.Module):
    """A tanh-squashed Gaussian policy: obs [N, obs] -> mean and log-std [N, act]."""

    def __init__(
        self,
        obs_dim: int,
        act_dim: int,
        hidden: list[int],
        tasks: int,
        log_std_bounds: tuple[float, float] = (-20.0, 2.0),
        multihead: bool = False,
        init: InitScheme = "torch",
        network: str = "mlp",
        network_options: dict | None = None,
    ) -> None:
        super().__init__()
        self.act_dim = act_dim
        self.tasks = tasks
        self.log_std_bounds = log_std_bounds
        self.net = build_network(
            "multihead" if multihead else network,
            network_options or {},
            members=1,
            in_features=obs_dim,
            hidden=hidden,
            out_features=2 * act_dim,
            tasks=tasks,
            task_columns=(obs_dim - tasks, obs_dim),
        )
        if init == "metaworld":
            self.net.init_metaworld(ACTOR_HEAD_BOUND)

    def forward(self, obs: Tensor) -> tuple[Tensor, Tensor]:
        out = self.net(obs, obs[..., -self.tasks :])[0]
        mean, log_std = out.split(self.act_dim, dim=-1)
        return mean, log_std.clamp(*self.log_std_bounds)


def squashed_sample(
    mean: Tensor, log_std: Tensor, noise: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Reparameterised tanh-Gaussian sample and its log-probability [N].

    :param noise: the standard normal draw (shaped like ``mean``); None draws it here.
    """
    eps = torch.randn_like(mean) if noise is None else noise
    u = mean + log_std.exp() * eps
    log_prob = (-0.5 * eps**2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
    # log(1 - tanh(u)^2) written stably as 2 (log 2 - u - softplus(-2u))
    log_prob = log_prob - (2 * (math.log(2.0) - u - F.softplus(-2 * u))).sum(-1)
    return torch.tanh(u), log_prob
