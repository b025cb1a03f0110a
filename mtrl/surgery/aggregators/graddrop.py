"""GradDrop (Chen et al., 2020, "Just Pick a Sign: Optimizing Deep Multitask Models with
Gradient Sign Dropout"), on parameter gradients as torchjd applies it."""

from __future__ import annotations

import warnings
from typing import Annotated, Any

import numpy as np
import torch
from annotated_types import Ge, Le
from torch import Tensor

from mtrl.configtypes import Float
from mtrl.surgery.aggregators.base import Aggregation, Aggregator
from mtrl.surgery.aggregators.registry import register_aggregator
from mtrl.surgery.taskgrads import TaskGradients


def sign_sums(rows: Tensor) -> tuple[Tensor, Tensor]:
    """Column sums of the positive and of the negative parts of ``rows`` [T, P_k].

    Two sums rather than Σ g and Σ |g|: a kept sum then has exactly the sign of its components,
    and no cancellation loses the smaller one.
    """
    size = rows.shape[1]
    # On the CPU, column chunks keep the [T, chunk] temporaries in cache (4x faster at T = 50);
    # on a GPU one pass per block avoids hundreds of small kernels.
    step = max(1024, 2**17 // rows.shape[0]) if rows.device.type == "cpu" else max(size, 1)
    positive, negative = rows.new_empty(size), rows.new_empty(size)
    for start in range(0, size, step):
        part = rows[:, start : start + step]
        torch.sum(part.clamp(min=0), dim=0, out=positive[start : start + step])
        torch.sum(part.clamp(max=0), dim=0, out=negative[start : start + step])
    return positive, negative


def graddrop_block(rows: Tensor, uniform: Tensor, leak: float = 0.0) -> Tensor:
    """GradDrop of one block [T, P_k] given uniform draws [P_k] in [0, 1).

    With the purity p = (1 + Σ_i g_i / Σ_i |g_i|) / 2 a coordinate keeps the positive task
    components where u < p, else the negative ones (each with the probability the paper gives);
    ``leak`` lets that fraction of the dropped components through.
    """
    positive, negative = sign_sums(rows)
    # p = positive / (positive - negative), so u < p without a division (0 < 0 where all are 0)
    keep_positive = (uniform * (positive - negative) < positive).to(rows.dtype)
    if leak:
        positive, negative = positive + leak * negative, negative + leak * positive
    # lerp with weights 0 and 1 is exact and, on the CPU, ten times faster than torch.where
    return torch.lerp(negative, positive, keep_positive)


@register_aggregator("graddrop")
class GradDrop(Aggregator):
    """Per coordinate, keep only the positive or only the negative task components, at random.

    For each coordinate the sign purity p = (1 + Σ_i g_i / Σ_i |g_i|) / 2 is the probability of
    keeping the positive components (else the negative ones); one uniform draw per coordinate
    decides (``graddrop_block``), so the direction's coordinate has the sign of every component
    it keeps. The direction is the sum of the kept components; identical task gradients g give
    T g, as coordinates whose components all share a sign keep them all.

    Paper: Chen, Ngiam, Huang, Luong, Kretzschmar, Chai, Anguelov, "Just Pick a Sign:
    Optimizing Deep Multitask Models with Gradient Sign Dropout", NeurIPS 2020, Algorithm 1
    (with f the identity). The paper applies it to the gradients at a layer's activations
    (summed over the batch, signed by the inputs); LibMTL's ``GradDrop`` does the same and
    refuses parameter gradients (``rep_grad`` must be True); torchjd's ``GradDrop`` applies it
    to the rows it is given, parameter gradients here, which this follows. Differences from
    torchjd: one leak for every task (the paper and torchjd allow one per task; LibMTL one for
    all); a coordinate with u = p exactly keeps the negative components (torchjd drops both);
    the draws come from a seeded generator on G's device, one block after another (torchjd:
    torch's global generator). A state saved on another device type cannot continue its random
    stream: the generator then restarts from the seed, with a warning.

    :param leak: the fraction of the dropped components kept anyway (0: the paper's GradDrop;
        1: the sum of the task gradients).
    :param seed: seeds the draws (None: fresh entropy); not an option: runs pass their seed.
    """

    description = "per coordinate keep the positive or the negative task components at random"
    paper = "Chen et al. 2020"
    stochastic = True
    stateful = True  # the random generator of the draws
    device_solver = True  # elementwise on G's device, with a generator there

    def __init__(self, leak: Annotated[Float, Ge(0), Le(1)] = 0.0, seed: int | None = None):
        self.leak = float(leak)
        self.seed = seed
        # The generator lives on G's device, so it is made at the first call, seeded from this.
        self.start_seed = int(np.random.SeedSequence(seed).entropy) % 2**63
        self.generator: torch.Generator | None = None
        self.saved: dict[str, Any] = {"device": None, "rng": None}  # continued by a new generator

    def _generator(self, device: torch.device) -> torch.Generator:
        if self.generator is not None and self.generator.device == device:
            return self.generator
        if self.generator is not None:  # G moved: continue the stream there if possible
            self.saved = {"device": str(self.generator.device), "rng": self.generator.get_state()}
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(self.start_seed)
        if self.saved["rng"] is not None:
            if torch.device(self.saved["device"]).type == device.type:
                self.generator.set_state(self.saved["rng"].cpu())
            else:
                warnings.warn(
                    f"graddrop: the saved random state is for {self.saved['device']}, not "
                    f"{device}; restarting the draws from the seed",
                    stacklevel=4,
                )
        return self.generator

    def _aggregate(self, G: TaskGradients) -> Aggregation:
        generator = self._generator(G.device)
        direction = []
        for view, block in zip(G.views(), G.blocks, strict=True):
            parts, _, size = view.shape  # one draw per coordinate of the flattened parameter
            uniform = torch.rand(
                parts * size, generator=generator, device=G.device, dtype=G.dtype
            ).view(parts, size)
            kept = [
                graddrop_block(rows, u, self.leak) for rows, u in zip(view, uniform, strict=True)
            ]
            direction.append(torch.stack(kept).view(block.shape[1:]))
        return Aggregation(direction)

    def options(self) -> dict[str, Any]:
        return {"leak": self.leak, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        if self.generator is None:
            return {"start_seed": self.start_seed, **self.saved}
        device, rng = str(self.generator.device), self.generator.get_state()
        return {"start_seed": self.start_seed, "device": device, "rng": rng}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.start_seed = int(state["start_seed"])
        self.generator = None
        self.saved = {"device": state["device"], "rng": state["rng"]}
