"""Soft Modularization (Yang et al. 2020, "Multi-Task Reinforcement Learning with Soft
Modularization"), following the Meta-World+ reference (rainx0r/metaworld-algorithms@30c9991,
``metaworld_algorithms/nn/soft_modules.py``, ``config/nn.py`` ``SoftModulesConfig``), which
follows the official code where the paper leaves details out (its NOTEs 1-5).

The base encoder f (``agent.hidden``, then ``embedding_dim``; one hidden layer of 400 in the
reference, its MLP's default width) reads the observation without the task id. The task
embedding z (a linear map of the one-hot id, with a bias) times the pre-activation f(s), through
a relu and an MLP of ``routing_width`` (NOTE 1), is the routing input. Layer l of the routing
network gives softmax weights p_l [M, M] (the last layer: [M]) from relu(routing input times a
linear map of p_<l, all earlier weights concatenated, NOTE 3; the first layer: the routing input
alone). The base network has ``depth`` layers of M modules (``module_width``); every module of
the first reads relu(f(s)) (NOTE 2); module j of layer l + 1 reads relu(Σ_k p_l[j, k] out_k)
(the relu after the weighted sum, NOTE 4), and the output layer reads relu(Σ_k p_L[k] out_k)
(NOTE 5).
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from annotated_types import Ge
from torch import Tensor, nn

from mtrl.agents.networks import (
    EnsembleLinear,
    drop_task_columns,
    init_uniform_,
    linear_stack,
    mix_sets,
    repeat_per_set,
    run_stack,
)
from mtrl.agents.registry import register_network
from mtrl.configtypes import Int

ROUTING_OUTPUT_BOUND = 1e-3
"""The reference's routing output layers (W_d^l): weights U(±1e-3), zero biases."""


@register_network("softmod")
class SoftModulesNetwork(nn.Module):
    """Soft Modularization: a task-conditioned routing network mixes layers of M modules.

    ``agent.hidden`` sets the hidden layers of the base observation encoder f (``[400]`` in the
    reference; ``agents/mtsac-softmod.yaml`` sets it).

    :param embedding_dim: size D of the observation and task embeddings (400 in the reference).
    :param routing_width: width of the routing network's layers (``SoftModulesConfig.width``,
        256).
    :param module_width: width d of each module (256).
    :param depth: layers of modules L (2 on MT10, 4 on MT50, the reference's comment).
    :param num_modules: modules M per layer (2 on MT10, 4 on MT50).
    """

    def __init__(
        self,
        members: int,
        in_features: int,
        hidden: list[int],
        out_features: int,
        tasks: int,
        task_columns: tuple[int, int],
        *,
        embedding_dim: Annotated[Int, Ge(1)] = 400,
        routing_width: Annotated[Int, Ge(1)] = 256,
        module_width: Annotated[Int, Ge(1)] = 256,
        depth: Annotated[Int, Ge(1)] = 2,
        num_modules: Annotated[Int, Ge(1)] = 2,
    ) -> None:
        super().__init__()
        self.members, self.num_modules, self.task_columns = members, num_modules, task_columns
        m, pairs = num_modules, num_modules * num_modules
        self.encoder = linear_stack(members, [in_features - tasks, *hidden, embedding_dim])  # f
        self.task_embedding = EnsembleLinear(members, tasks, embedding_dim)  # z
        self.routing = linear_stack(members, [embedding_dim, routing_width, routing_width])
        # routing layer l > 0 reads the weights of layers 0 .. l - 1 (W_u^l), every layer
        # gives [M, M] weights but the last, [M] (W_d^l)
        self.prob_embeddings = nn.ModuleList(
            EnsembleLinear(members, layer * pairs, routing_width) for layer in range(1, depth)
        )
        self.prob_outputs = nn.ModuleList(
            EnsembleLinear(members, routing_width, pairs if layer < depth - 1 else m)
            for layer in range(depth)
        )
        # layer l's modules of member e are members e * M .. e * M + M - 1
        self.modules_ = linear_stack(members * m, [embedding_dim] + [module_width] * depth)
        self.head = EnsembleLinear(members, module_width, out_features)

    def routing_weights(self, one_hot: Tensor, obs_embedding: Tensor) -> list[Tensor]:
        """The softmax weights of every layer: [E, N, M, M] (next module j, module k), the last
        [E, N, M]; ``obs_embedding`` is f(s) before its activation."""
        embedding = run_stack(self.routing, F.relu(self.task_embedding(one_hot) * obs_embedding))
        m, weights, flat = self.num_modules, [], []
        for layer, output in enumerate(self.prob_outputs):
            e = embedding
            if layer:  # every earlier layer's weights, concatenated (skip connections)
                e = e * self.prob_embeddings[layer - 1](torch.cat(flat, dim=-1))
            logits = output(F.relu(e))
            if layer < len(self.prob_outputs) - 1:
                logits = logits.unflatten(-1, (m, m))
            weights.append(torch.softmax(logits, dim=-1))
            flat.append(weights[-1].flatten(2))
        return weights

    def forward(self, x: Tensor, one_hot: Tensor) -> Tensor:
        obs_embedding = run_stack(self.encoder, drop_task_columns(x, self.task_columns))
        weights = self.routing_weights(one_hot, obs_embedding)
        # every module of the first layer reads relu(f(s)): [E * M, N, D]
        h = repeat_per_set(F.relu(obs_embedding), self.num_modules)
        for layer, probs in zip(self.modules_, weights, strict=True):
            out = layer(h)  # [E * M, N, d]
            if probs.dim() == 4:  # module j of the next layer reads Σ_k p[j, k] out_k
                out = out.unflatten(0, (self.members, self.num_modules))
                h = F.relu(torch.einsum("eknd,enjk->ejnd", out, probs)).flatten(0, 1)
            else:  # the output layer reads Σ_k p[k] out_k
                h = F.relu(mix_sets(out, probs))
        return self.head(h)

    def init_metaworld(self, head_bound: float) -> None:
        """He-uniform dense layers with zero biases (z too, fan-in T; each module by its own
        fan-in), the routing output layers' weights U(±1e-3) with zero biases, and the output
        layer U(±head_bound), which the reference's policy and Q-function pass to every
        network."""
        for layer in [
            *self.encoder,
            self.task_embedding,
            *self.routing,
            *self.prob_embeddings,
            *self.modules_,
        ]:
            layer.init_he_uniform()
        for layer in self.prob_outputs:
            init_uniform_(layer, ROUTING_OUTPUT_BOUND)
            nn.init.zeros_(layer.bias)
        init_uniform_(self.head, head_bound)

    def last_shared_layer(self) -> nn.Module:
        return self.head
