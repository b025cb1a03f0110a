"""MOORE (Hendawy et al. 2024, "Multi-Task Reinforcement Learning with Mixture of Orthogonal
Experts"), following the Meta-World+ reference (rainx0r/metaworld-algorithms@30c9991,
``metaworld_algorithms/nn/moore.py`` and ``examples/multi_task/moore_mt10.py``).

K expert MLPs read the observation (without the task id); their outputs are made orthonormal
per sample by Gram-Schmidt, mixed by task weights (a bias-free linear map of the one-hot id),
squashed by tanh and read out by one output layer per task.
"""

from __future__ import annotations

from typing import Annotated

import torch
from annotated_types import Ge
from torch import Tensor, nn

from mtrl.agents.networks import (
    EnsembleLinear,
    TaskHeads,
    drop_task_columns,
    init_uniform_,
    linear_stack,
    run_stack,
)
from mtrl.agents.registry import register_network
from mtrl.configtypes import Int

EPS = 1e-8
"""Added to norms in the Gram-Schmidt step, as the reference."""


def orthonormalise(x: Tensor) -> Tensor:
    """Gram-Schmidt over the expert axis: [..., K, D] -> K orthonormal rows per sample (each
    expert's output minus its projections on the previous ones, normalised)."""
    basis = [x[..., 0, :] / (x[..., 0, :].norm(dim=-1, keepdim=True) + EPS)]
    for k in range(1, x.shape[-2]):
        v = x[..., k, :]
        for b in basis:
            v = v - (v * b).sum(dim=-1, keepdim=True) * b
        basis.append(v / (v.norm(dim=-1, keepdim=True) + EPS))
    return torch.stack(basis, dim=-2)


@register_network("moore")
class MOORENetwork(nn.Module):
    """MOORE: a task-weighted mixture of orthonormalised experts, one output layer per task.

    :param num_experts: expert MLPs (4 on MT10 and 6 on MT50 in the paper and the reference).
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
        num_experts: Annotated[Int, Ge(1)] = 4,
    ) -> None:
        super().__init__()
        self.members, self.num_experts, self.task_columns = members, num_experts, task_columns
        sizes = [in_features - tasks, *hidden]  # the experts do not see the task id
        self.experts = linear_stack(members * num_experts, sizes)
        self.task_weights = EnsembleLinear(members, tasks, num_experts, bias=False)
        self.heads = TaskHeads(members, tasks, sizes[-1], out_features)

    def forward(self, x: Tensor, one_hot: Tensor) -> Tensor:
        h = run_stack(self.experts, drop_task_columns(x, self.task_columns))  # [E * K, N, width]
        experts = h.unflatten(0, (self.members, self.num_experts)).transpose(1, 2)  # [E,N,K,D]
        weights = self.task_weights(one_hot)  # [E, N, K]
        features = torch.tanh((orthonormalise(experts) * weights[..., None]).sum(dim=-2))
        return self.heads(features, one_hot)

    def init_metaworld(self, head_bound: float) -> None:
        """He-uniform expert layers (zero biases) and task weights, the output layers
        U(±head_bound), which the reference's policy and Q-function pass to every network."""
        for layer in [*self.experts, self.task_weights]:
            layer.init_he_uniform()
        init_uniform_(self.heads, head_bound)

    def last_shared_layer(self) -> nn.Module:
        """The experts' last layer (the output layers are per task)."""
        return self.experts[-1]
