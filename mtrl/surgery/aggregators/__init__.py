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
    OptionSpec,
    aggregator_class,
    aggregator_options,
    get_aggregator,
    list_aggregators,
    option_specs,
    register_aggregator,
    validate_options,
)

__all__ = [
    "Aggregation",
    "Aggregator",
    "NonFiniteGradientError",
    "OptionSpec",
    "Weighting",
    "aggregator_class",
    "aggregator_options",
    "check_gradients",
    "get_aggregator",
    "gramian",
    "list_aggregators",
    "option_specs",
    "register_aggregator",
    "validate_options",
]
