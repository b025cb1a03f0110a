"""Random task-gradient matrices for the aggregator tests (imported by name: conftest.py puts
the tests folder on sys.path)."""

import torch

SIZES = [(t, p) for t in (2, 5, 10, 50) for p in (3, 20, 200)]
"""(T, P) pairs: few and many tasks, T > P included."""


def random_G(tasks: int, params: int, seed: int) -> torch.Tensor:
    """Gaussian rows (float64) with norms spread over about [0.3, 3] times their typical size."""
    gen = torch.Generator().manual_seed(seed)
    G = torch.randn(tasks, params, generator=gen, dtype=torch.float64)
    return G * (0.3 + 2.7 * torch.rand(tasks, 1, generator=gen, dtype=torch.float64))
