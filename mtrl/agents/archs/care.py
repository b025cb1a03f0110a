"""CARE (Sodhani et al. 2021, "Multi-Task Reinforcement Learning with Context-based
Representations"), following the Meta-World+ reference (rainx0r/metaworld-algorithms@30c9991,
``metaworld_algorithms/nn/care.py``, ``config/nn.py`` ``CAREConfig``).

The paper encodes each task's text description with a pretrained language model; the reference
does not (its TODO: "should be replaced with a pretrained NLP model eventually") and learns a
task embedding instead (``nn.Embed`` of the task id), and so does this network: no metadata or
language model is used. The relu of the embedding goes through a context MLP; from the context
an attention MLP gives softmax weights (with a temperature) over K expert encoders of the
observation (without the task id); the weighted encoding and the context, concatenated, feed the
torso (``agent.hidden``) and its output layer.
"""

from __future__ import annotations

from typing import Annotated

import torch
import torch.nn.functional as F
from annotated_types import Ge, Gt
from torch import Tensor, nn

from mtrl.agents.networks import (
    EnsembleLinear,
    drop_task_columns,
    init_flax_embedding_,
    init_uniform_,
    linear_stack,
    mix_sets,
    run_stack,
)
from mtrl.agents.registry import register_network
from mtrl.configtypes import Float, Int


@register_network("care")
class CARENetwork(nn.Module):
    """CARE: a task context attends over a mixture of K observation encoders (learned context).

    :param encoder_width: width of the context, attention and expert MLPs' hidden layers (50 in
        the Meta-World+ reference).
    :param encoder_depth: hidden layers of the context, attention and expert MLPs (2).
    :param encoder_temperature: softmax temperature of the attention over the experts (1.0).
    :param embedding_dim: size of the task embedding, the context and each expert's output (50).
    :param num_experts: expert encoders K (6 on MT10, 10 on MT50, the reference's comment).
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
        encoder_temperature: Annotated[Float, Gt(0)] = 1.0,
        embedding_dim: Annotated[Int, Ge(1)] = 50,
        num_experts: Annotated[Int, Ge(1)] = 6,
    ) -> None:
        super().__init__()
        self.task_columns = task_columns
        self.temperature = encoder_temperature
        encoder = [encoder_width] * encoder_depth
        self.embedding = EnsembleLinear(members, tasks, embedding_dim, bias=False)
        self.context = linear_stack(members, [embedding_dim, *encoder, embedding_dim])
        self.attention = linear_stack(members, [embedding_dim, *encoder, num_experts])
        # member e's experts are members e * K .. e * K + K - 1; they do not see the task id
        self.experts = linear_stack(
            members * num_experts, [in_features - tasks, *encoder, embedding_dim]
        )
        self.torso = linear_stack(members, [2 * embedding_dim, *hidden, out_features])

    def forward(self, x: Tensor, one_hot: Tensor) -> Tensor:
        context = run_stack(self.context, F.relu(self.embedding(one_hot)))  # [E, N, D]
        weights = torch.softmax(run_stack(self.attention, context) / self.temperature, dim=-1)
        experts = run_stack(self.experts, drop_task_columns(x, self.task_columns))  # [E*K, N, D]
        encoded = mix_sets(experts, weights)
        return run_stack(self.torso, torch.cat([encoded, context], dim=-1))

    def init_metaworld(self, head_bound: float) -> None:
        """He-uniform dense layers with zero biases, the embedding as flax's ``nn.Embed``
        (variance scaling 1 / embedding_dim: its fan-in is the feature axis; truncated normal),
        and the torso's output layer U(±head_bound), which the reference's policy and
        Q-function pass to every network."""
        for layer in [*self.context, *self.attention, *self.experts, *self.torso]:
            layer.init_he_uniform()
        init_flax_embedding_(self.embedding)
        init_uniform_(self.torso[-1], head_bound)

    def last_shared_layer(self) -> nn.Module:
        return self.torso[-1]
