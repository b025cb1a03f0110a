"""PaCo (Sun et al. 2022, "PaCo: Parameter-Compositional Multi-Task Reinforcement Learning"),
following the Meta-World+ reference (rainx0r/metaworld-algorithms@30c9991,
``metaworld_algorithms/nn/paco.py``, ``config/nn.py`` ``PaCoConfig``).

Every layer of the MLP (``agent.hidden``, then the output layer) holds K parameter sets; a task
vector w_τ (a linear map of the one-hot task id, with a bias) mixes the K outputs of each layer,
``y = Σ_k w_τ[k] (W_k x + b_k)``, which is the layer with parameters ``Σ_k w_τ[k] θ_k``. The
network reads the observation without the task id.
"""

from __future__ import annotations

from typing import Annotated

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
)
from mtrl.agents.registry import register_network
from mtrl.configtypes import Int


@register_network("paco")
class PaCoNetwork(nn.Module):
    """PaCo: every layer is a task-weighted combination of K shared parameter sets.

    :param num_parameter_sets: parameter sets K per layer (5 on MT10, the reference's
        PaCoConfig default and the paper's MT10 setting; its MT50 example uses 20).
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
        num_parameter_sets: Annotated[Int, Ge(1)] = 5,
    ) -> None:
        super().__init__()
        self.sets, self.task_columns = num_parameter_sets, task_columns
        self.task_weights = EnsembleLinear(members, tasks, num_parameter_sets)  # w_τ
        # layer i's K parameter sets of member e are members e * K .. e * K + K - 1
        self.layers = linear_stack(
            members * num_parameter_sets, [in_features - tasks, *hidden, out_features]
        )

    def forward(self, x: Tensor, one_hot: Tensor) -> Tensor:
        weights = self.task_weights(one_hot)  # [E, N, K]
        h = drop_task_columns(x, self.task_columns)  # [N, features]: the first layer broadcasts
        for i, layer in enumerate(self.layers):
            if i:  # every parameter set of member e reads member e's mixed output
                h = repeat_per_set(h, self.sets)  # [E * K, N, D]
            h = mix_sets(layer(h), weights)
            if i < len(self.layers) - 1:
                h = F.relu(h)
        return h

    def init_metaworld(self, head_bound: float) -> None:
        """He-uniform hidden layers (each parameter set by its own fan-in) and w_τ (fan-in T),
        zero biases, and every parameter set of the output layer U(±head_bound), which the
        reference's policy and Q-function pass to every network."""
        for layer in [self.task_weights, *self.layers[:-1]]:
            layer.init_he_uniform()
        init_uniform_(self.layers[-1], head_bound)

    def last_shared_layer(self) -> nn.Module:
        """The output layer (all K parameter sets; every task combines them)."""
        return self.layers[-1]
