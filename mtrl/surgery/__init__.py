"""Gradient surgery: per-task gradients in one vectorised pass and aggregators that combine them.

Independent of RL: it works for any torch model whose loss splits into per-task losses.
"""

from mtrl.surgery.aggregators import (
    Aggregation,
    Aggregator,
    LossWeighting,
    NonFiniteGradientError,
    OptionSpec,
    Weighting,
    aggregator_class,
    aggregator_options,
    check_gradients,
    get_aggregator,
    gramian,
    list_aggregators,
    option_specs,
    register_aggregator,
    validate_options,
)
from mtrl.surgery.diagnostics import GradientDiagnostics, gradient_diagnostics
from mtrl.surgery.engine import flatten_grads, num_tasks, per_task_grads, write_grads
from mtrl.surgery.taskgrads import TaskGradients

__all__ = [
    "Aggregation",
    "Aggregator",
    "GradientDiagnostics",
    "LossWeighting",
    "NonFiniteGradientError",
    "OptionSpec",
    "TaskGradients",
    "Weighting",
    "aggregator_class",
    "aggregator_options",
    "check_gradients",
    "flatten_grads",
    "get_aggregator",
    "gradient_diagnostics",
    "gramian",
    "list_aggregators",
    "num_tasks",
    "option_specs",
    "per_task_grads",
    "register_aggregator",
    "validate_options",
    "write_grads",
]
