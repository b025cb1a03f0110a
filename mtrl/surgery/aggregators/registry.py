"""Aggregators by name: ``get_aggregator("pcgrad", seed=0)``, ``list_aggregators()``.

An aggregator's options are the keyword arguments of its ``__init__``, each declared once with
its type and range in the annotation (e.g. ``c: Annotated[Float, Ge(0)] = 0.4``) and described
by a ``:param c:`` line of the class docstring. ``validate_options`` checks values against those
annotations; ``seed`` is not an option: stochastic aggregators get it from the run seed.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel

from mtrl.errors import MtrlError, close_matches
from mtrl.options import OptionSpec, check_options, options_model, signature_options
from mtrl.surgery.aggregators.base import Aggregator

A = TypeVar("A", bound=type[Aggregator])
_REGISTRY: dict[str, type[Aggregator]] = {}
SEED = "seed"
"""The constructor argument through which stochastic aggregators are seeded."""


def register_aggregator(name: str) -> Callable[[A], A]:
    """Class decorator adding an aggregator to the registry under ``name``."""

    def add(cls: A) -> A:
        if name in _REGISTRY:
            raise ValueError(f"aggregator {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return add


@functools.cache
def option_specs(name: str) -> dict[str, OptionSpec]:
    """The options of aggregator ``name``, in signature order."""
    return signature_options(_lookup(name), exclude=(SEED,))


def aggregator_options(name: str) -> dict[str, Any]:
    """The options of aggregator ``name`` with their defaults."""
    return {key: spec.default for key, spec in option_specs(name).items()}


@functools.cache
def _options_model(name: str) -> type[BaseModel]:
    return options_model(f"{name}_options", option_specs(name))


def validate_options(name: str, options: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """All options of aggregator ``name`` (defaults filled in) after checking ``options``.

    Values may be command-line text (``RawValue``); unknown options and bad values are one-line
    MtrlErrors naming the key (``<where>.<option>``, ``where`` defaulting to the name).
    """
    unknown = (
        f"unknown option {where}.{{key}} for aggregator {name!r}"
        if where
        else f"aggregator {name!r} has no option {{key!r}}"
    )
    return check_options(option_specs(name), _options_model(name), options, where or name, unknown)


def list_aggregators() -> dict[str, str]:
    """Registered aggregator names -> one-line descriptions."""
    return {name: cls.description for name, cls in sorted(_REGISTRY.items())}


def aggregator_class(name: str) -> type[Aggregator]:
    """The class registered as ``name`` (a one-line MtrlError listing them if unknown)."""
    return _lookup(name)


def get_aggregator(name: str, seed: int | None = None, **options: Any) -> Aggregator:
    """Build aggregator ``name`` with ``options`` (checked by ``validate_options``); ``seed``
    seeds a stochastic aggregator and is ignored by the others."""
    cls = _lookup(name)
    values = validate_options(name, options)
    if SEED in inspect.signature(cls.__init__).parameters:
        values[SEED] = seed
    return cls(**values)


def _lookup(name: str) -> type[Aggregator]:
    if name not in _REGISTRY:
        raise MtrlError(
            f"unknown aggregator {name!r}{close_matches(name, _REGISTRY)}; "
            f"registered: {', '.join(sorted(_REGISTRY))}"
        )
    return _REGISTRY[name]
