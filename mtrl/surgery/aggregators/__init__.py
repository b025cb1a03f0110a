"""Aggregators: pure maps from per-task gradients G [T, P] to one direction [P]."""

from mtrl.surgery.aggregators import basic, cagrad, pcgrad  # noqa: F401  (registers them)
from mtrl.surgery.aggregators.base import (
    Aggregation,
    Aggregator,
    NonFiniteGradientError,
    Weighting,
    check_gradients,
    gramian,
)
from mtrl.surgery.aggregators.registry import (
    aggregator_options,
    get_aggregator,
    list_aggregators,
    register_aggregator,
)

__all__ = [
    "Aggregation",
    "Aggregator",
    "NonFiniteGradientError",
    "Weighting",
    "aggregator_options",
    "check_gradients",
    "get_aggregator",
    "gramian",
    "list_aggregators",
    "register_aggregator",
]
