"""Network architectures by name (``agent.network``): the MLP, task heads, FiLM, ...

An architecture is an ``nn.Module`` class registered with ``register_network``. Its constructor
takes the fixed arguments below, then its own options as keyword arguments, each declared once
with its type and range in the annotation and described by a ``:param:`` line of the class
docstring (``agent.network_options.<name>=value`` on the command line; ``mtrl train --help``
lists them):

    __init__(self, members, in_features, hidden, out_features, tasks, task_columns, *, ...)

- ``members``: E independent copies evaluated together (the twin critic: 2, the actor: 1).
- ``in_features``: the input size, the one-hot task id included, at columns ``task_columns``
  (a ``(start, stop)`` pair: the end of the observation for the actor, before the action for
  the critic).
- ``hidden``: the ``agent.hidden`` layer sizes, for architectures that take them.

``forward(x [N, in_features], one_hot [N, T]) -> [E, N, out_features]``, each row on its own
(no mixing across rows, so per-task gradients can be formed per row), and
``init_metaworld(head_bound)`` (``agent.init=metaworld``) and ``last_shared_layer()`` (the layer
every task uses last, for GradNorm).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel
from torch import nn

from mtrl.errors import MtrlError, close_matches
from mtrl.options import OptionSpec, check_options, options_model, signature_options

N = TypeVar("N", bound=type[nn.Module])
_NETWORKS: dict[str, type[nn.Module]] = {}
FIXED = ("members", "in_features", "hidden", "out_features", "tasks", "task_columns")
"""Constructor arguments every architecture takes (not options)."""


def register_network(name: str) -> Callable[[N], N]:
    """Class decorator adding an architecture to the registry under ``name``."""

    def add(cls: N) -> N:
        if name in _NETWORKS:
            raise ValueError(f"network {name!r} is already registered")
        _NETWORKS[name] = cls
        return cls

    return add


def network_class(name: str) -> type[nn.Module]:
    """The class registered as ``name`` (a one-line MtrlError listing them if unknown)."""
    if name not in _NETWORKS:
        raise MtrlError(
            f"agent.network={name!r}: unknown network{close_matches(name, _NETWORKS)}; "
            f"registered: {', '.join(sorted(_NETWORKS))}"
        )
    return _NETWORKS[name]


def list_networks() -> dict[str, str]:
    """Registered architecture names -> the first line of their docstrings."""
    return {
        name: (cls.__doc__ or "").strip().splitlines()[0] for name, cls in sorted(_NETWORKS.items())
    }


@functools.cache
def network_options(name: str) -> dict[str, OptionSpec]:
    """The options of architecture ``name``, in signature order."""
    return signature_options(network_class(name), exclude=FIXED)


@functools.cache
def _model(name: str) -> type[BaseModel]:
    return options_model(f"{name}_network_options", network_options(name))


def validate_network_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """All options of architecture ``name`` (defaults filled in) after checking ``options``."""
    unknown = f"unknown option agent.network_options.{{key}} for network {name!r}"
    return check_options(
        network_options(name), _model(name), options, "agent.network_options", unknown
    )


def build_network(
    name: str,
    options: Mapping[str, Any],
    *,
    members: int,
    in_features: int,
    hidden: list[int],
    out_features: int,
    tasks: int,
    task_columns: tuple[int, int],
) -> nn.Module:
    """An instance of architecture ``name`` with ``options`` (checked)."""
    values = validate_network_options(name, options)
    return network_class(name)(
        members, in_features, list(hidden), out_features, tasks, task_columns, **values
    )
