"""Device solvers compiled by torch.compile (``compile_solvers``): the weights the eager solver
gives, the random draws left eager (PCGrad compiles only its projections), and a failed compile
that falls back with one warning."""

import torch

from mtrl.surgery import get_aggregator
from mtrl.surgery.aggregators import Weighting
from mtrl.surgery.aggregators.base import _COMPILED
from mtrl.surgery.aggregators.device_solvers import pcgrad_weights_device
from mtrl.surgery.taskgrads import TaskGradients


def grads(seed: int, tasks: int = 4, params: int = 12) -> TaskGradients:
    G = torch.randn(tasks, params, generator=torch.Generator().manual_seed(seed))
    return TaskGradients([G])


def test_a_compiled_cagrad_solver_gives_the_eager_weights():
    # few steps and grid points keep Inductor's compile short on the CPU; the graph is the same
    # sequence of ops as at the defaults, only shorter
    compiled = get_aggregator("cagrad", c=0.5, solver="device", device_iters=3)
    eager = get_aggregator("cagrad", c=0.5, solver="device", device_iters=3)
    compiled.compile_solver = True
    for seed in range(2):  # the second call reuses the compiled solver
        G = grads(seed)
        got, expected = compiled.aggregate(G).weights, eager.aggregate(G).weights
        torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-7)
    assert type(compiled).device_weights in _COMPILED and compiled.compile_solver


def test_pcgrad_draws_its_orders_eagerly_and_compiles_the_projections():
    compiled = get_aggregator("pcgrad", solver="device", seed=0)
    eager = get_aggregator("pcgrad", solver="device", seed=0)
    compiled.compile_solver = True
    for seed in range(2):  # the orders come from torch's generator, drawn alike by both
        G = grads(seed, tasks=5)
        torch.manual_seed(seed)
        got = compiled.aggregate(G).weights
        torch.manual_seed(seed)
        expected = eager.aggregate(G).weights
        # Inductor may fuse the projections' products differently: equal to rounding
        torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-12)
    assert pcgrad_weights_device in _COMPILED and type(compiled).device_weights not in _COMPILED
    assert compiled.compile_solver


class Branching(Weighting):
    """A solver that branches on a tensor's value, which torch.compile(fullgraph=True) refuses."""

    device_solver = True
    solver = "device"

    def device_weights(self, gram: torch.Tensor) -> torch.Tensor:
        weights = torch.full((gram.shape[0],), 1.0 / gram.shape[0], dtype=gram.dtype)
        return weights if gram.trace() > 0 else -weights


def test_a_failed_compile_warns_once_and_solves_uncompiled(capsys):
    agg = Branching()
    agg.compile_solver = True
    first, second = agg.aggregate(grads(0)), agg.aggregate(grads(1))
    torch.testing.assert_close(first.weights, torch.full((4,), 0.25))
    torch.testing.assert_close(second.weights, torch.full((4,), 0.25))
    err = capsys.readouterr().err
    assert err.count("warning: compile_solvers:") == 1 and "solves uncompiled" in err
    assert not agg.compile_solver
