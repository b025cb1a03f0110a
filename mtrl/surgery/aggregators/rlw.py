"""RLW: random loss weighting (Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus
Test for Multi-Task Learning", TMLR 2022)."""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor

from mtrl.surgery.aggregators.base import Aggregation, Aggregator
from mtrl.surgery.aggregators.registry import register_aggregator
from mtrl.surgery.taskgrads import TaskGradients

Distribution = Literal["normal", "uniform", "dirichlet", "bernoulli", "constrained_bernoulli"]


@register_aggregator("rlw")
class RLW(Aggregator):
    """Weight the task losses with fresh random weights at every update.

    The paper's RLW: weights ``softmax(z)``, z ~ N(0, I), drawn anew for each update (LibMTL's
    RLW, by the paper's authors, and torchjd's ``Random``); the direction is the gradient of the
    weighted loss sum, so MT-SAC takes the fused path (one backward, no per-task gradients). The
    other distributions are those the paper compares, drawn and normalised as in the authors'
    code (LibMTL commit d884c93, Dec 2021; later versions keep only the normal draws):
    ``uniform`` (U(0, 1)) and ``dirichlet`` (Dir(1)) draws go through the softmax as well;
    ``bernoulli`` gives each task weight 0 or 1 (p = 1/2, redrawn while every weight is 0) and
    ``constrained_bernoulli`` weight 1 to one task drawn uniformly.

    Every update draws once: from ``fixed_weights`` on the fused path, or from ``aggregate``
    when per-task gradients are formed (diagnostics), the same way from the same generator, so
    the random stream does not depend on which path a step took. T = 1 draws nothing and
    returns that task's gradient. Softmax weights sum to 1 (identical task gradients give that
    gradient); the Bernoulli weights sum to the number of tasks drawn.

    :param distribution: of the weights: normal (softmax of N(0, 1) draws, the paper's default),
        uniform or dirichlet (through the softmax too), bernoulli (0/1 weights) or
        constrained_bernoulli (one task per update).
    :param seed: seeds the draws (None: fresh entropy); not an option: runs pass their seed.

    In an update replayed from a CUDA graph (``compile``; ``in_cuda_graph``) the weights are
    drawn on the GPU from torch's generator there (saved in checkpoints with the run), as
    PCGrad's orders are, so the graph draws anew at every replay; the draws then differ from
    the seeded generator's, which every other update draws from. ``bernoulli``'s redraws
    while every weight is 0 need the host: those updates are not captured.
    """

    description = "random task weights drawn anew at every update (softmax of normal draws)"
    paper = "Lin et al. 2022"
    stochastic = True
    stateful = True  # the generator of the draws
    device_solver = True  # in a captured update: drawn on the GPU

    def __init__(self, distribution: Distribution = "normal", seed: int | None = None) -> None:
        self.distribution = distribution
        self.seed = seed
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(seed)

    def runs_on_device(self) -> bool:
        return self.distribution != "bernoulli"

    def draw(self, tasks: int, device: torch.device | None = None) -> Tensor:
        """The weights [T] (float64) of one update; each call draws anew: from the seeded
        generator on the CPU, or in a captured update on ``device`` (a GPU) from torch's
        generator there."""
        on_gpu = (
            self.in_cuda_graph
            and device is not None
            and torch.device(device).type != "cpu"
            and self.runs_on_device()
        )
        if tasks == 1:  # as ``aggregate`` for T = 1: no draw
            return torch.ones(1, dtype=torch.float64, device=device if on_gpu else None)
        gen = None if on_gpu else self.generator
        kw = {"dtype": torch.float64, "device": device if on_gpu else None}
        if self.distribution == "normal":
            return torch.softmax(torch.randn(tasks, generator=gen, **kw), dim=0)
        if self.distribution == "uniform":
            return torch.softmax(torch.rand(tasks, generator=gen, **kw), dim=0)
        if self.distribution == "dirichlet":  # Dir(1): normalised Exp(1) draws
            e = torch.empty(tasks, **kw).exponential_(generator=gen)
            return torch.softmax(e / e.sum(), dim=0)
        if self.distribution == "bernoulli":
            while True:
                w = (torch.rand(tasks, generator=gen, **kw) < 0.5).double()
                if w.any():
                    return w
        chosen = torch.randint(tasks, (1,), generator=gen, device=kw["device"])
        return torch.zeros(tasks, **kw).scatter(0, chosen, 1.0)

    def fixed_weights(self, tasks: int, device: torch.device | None = None) -> Tensor:
        """This update's random weights (a new draw per call: call it once per update)."""
        return self.draw(tasks, device)

    def _aggregate(self, G: TaskGradients) -> Aggregation:
        weights = self.draw(G.num_tasks, G.device).to(device=G.device, dtype=G.dtype)
        return Aggregation([], weights)

    def options(self) -> dict[str, Any]:
        return {"distribution": self.distribution, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"].cpu())
