"""FiLM (Perez et al. 2018, "FiLM: Visual Reasoning with a General Conditioning Layer") as a
multi-task network, following the Meta-World+ reference (rainx0r/metaworld-algorithms@30c9991,
``metaworld_algorithms/nn/film.py``).

A learned task embedding (relu of an embedding of the task id) drives a small MLP that outputs
one scalar scale and shift per layer of an observation encoder; the encoder's output and the
task embedding are concatenated and fed to the MLP torso (``agent.hidden``) and its head.
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
    init_flax_embedding_,
    init_uniform_,
    linear_stack,
    run_stack,
)
from mtrl.agents.registry import register_network
from mtrl.configtypes import Int


@register_network("film")
class FiLMNetwork(nn.Module):
    """FiLM: a task embedding scales and shifts every layer of an observation encoder.

    :param encoder_width: width of the observation encoder's layers and of the FiLM generator
        (50 in the Meta-World+ reference).
    :param encoder_depth: layers of the observation encoder, and hidden layers of the FiLM
        generator (2).
    :param embedding_dim: size of the task embedding and of the encoder's output (50).
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
        encoder_width: Annotated[Int, Ge(1)] = 50,
        encoder_depth: Annotated[Int, Ge(1)] = 2,
        embedding_dim: Annotated[Int, Ge(1)] = 50,
    ) -> None:
        super().__init__()
        self.task_columns = task_columns
        self.encoder_depth = encoder_depth
        features = in_features - tasks  # the observation (and action) without the task id
        self.embedding = EnsembleLinear(members, tasks, embedding_dim, bias=False)
        self.film = linear_stack(
            members, [embedding_dim] + [encoder_width] * encoder_depth + [2 * (encoder_depth + 1)]
        )
        self.encoder = linear_stack(
            members, [features] + [encoder_width] * encoder_depth + [embedding_dim]
        )
        self.torso = linear_stack(members, [2 * embedding_dim, *hidden, out_features])

    def forward(self, x: Tensor, one_hot: Tensor) -> Tensor:
        obs = drop_task_columns(x, self.task_columns)
        task = F.relu(self.embedding(one_hot))  # [E, N, embedding]
        film = run_stack(self.film, task).unflatten(-1, (self.encoder_depth + 1, 2))
        h = obs
        for i, layer in enumerate(self.encoder):
            h = layer(h)
            if i < self.encoder_depth:
                h = F.relu(h)
            h = h * film[..., i, 0:1] + film[..., i, 1:2]
        return run_stack(self.torso, torch.cat([h, task], dim=-1))

    def init_metaworld(self, head_bound: float) -> None:
        """He-uniform dense layers with zero biases, the embedding as flax's ``nn.Embed``
        (variance scaling 1 / embedding_dim, truncated normal), and the torso's output layer
        U(±head_bound), which the reference's policy and Q-function pass to every network."""
        for layer in [*self.film, *self.encoder, *self.torso]:
            layer.init_he_uniform()
        init_flax_embedding_(self.embedding)
        init_uniform_(self.torso[-1], head_bound)

    def last_shared_layer(self) -> nn.Module:
        return self.torso[-1]
