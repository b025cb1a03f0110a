"""Aggregators by name: ``get_aggregator("pcgrad", seed=0)``, ``list_aggregators()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from mtrl.errors import MtrlError, close_matches
from mtrl.surgery.aggregators.base import Aggregator

A = TypeVar("A", bound=type[Aggregator])
_REGISTRY: dict[str, type[Aggregator]] = {}


def register_aggregator(name: str) -> Callable[[A], A]:
    """Class decorator adding an aggregator to the registry under ``name``."""

    def add(cls: A) -> A:
        if name in _REGISTRY:
            raise ValueError(f"aggregator {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return add


def aggregator_options(name: str) -> dict[str, Any]:
    """The options of aggregator ``name`` with their defaults."""
    cls = _lookup(name)
    sig = inspect.signature(cls.__init__)
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.name != "self" and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def list_aggregators() -> dict[str, str]:
    """Registered aggregator names -> one-line descriptions."""
    return {name: cls.description for name, cls in sorted(_REGISTRY.items())}


def get_aggregator(name: str, **options: Any) -> Aggregator:
    """Build aggregator ``name`` with ``options``; unknown names or options raise MtrlError."""
    cls = _lookup(name)
    valid = aggregator_options(name)
    for key in options:
        if key not in valid:
            listed = ", ".join(valid) or "none"
            raise MtrlError(
                f"aggregator {name!r} has no option {key!r}{close_matches(key, valid)}; "
                f"its options: {listed}"
            )
    return cls(**options)


def _lookup(name: str) -> type[Aggregator]:
    if name not in _REGISTRY:
        raise MtrlError(
            f"unknown aggregator {name!r}{close_matches(name, _REGISTRY)}; "
            f"registered: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]
