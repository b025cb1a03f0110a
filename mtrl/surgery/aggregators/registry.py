"""Aggregators by name: ``get_aggregator("pcgrad", seed=0)``, ``list_aggregators()``.

An aggregator's options are the keyword arguments of its ``__init__``, each declared once with
its type and range in the annotation (e.g. ``c: Annotated[Float, Ge(0)] = 0.4``) and described
by a ``:param c:`` line of the class docstring. ``validate_options`` checks values against those
annotations; ``seed`` is not an option: stochastic aggregators get it from the run seed.
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from mtrl.configtools import read_raw
from mtrl.configtypes import error_line, type_text
from mtrl.errors import MtrlError, close_matches
from mtrl.surgery.aggregators.base import Aggregator

A = TypeVar("A", bound=type[Aggregator])
_REGISTRY: dict[str, type[Aggregator]] = {}
SEED = "seed"
"""The constructor argument through which stochastic aggregators are seeded."""


@dataclass(frozen=True)
class OptionSpec:
    """One option of an aggregator: its annotated type, default and description."""

    name: str
    annotation: Any
    default: Any
    doc: str

    @property
    def accepts(self) -> str:
        """What values the option takes, e.g. ``number >= 0``."""
        return type_text(self.annotation)


def register_aggregator(name: str) -> Callable[[A], A]:
    """Class decorator adding an aggregator to the registry under ``name``."""

    def add(cls: A) -> A:
        if name in _REGISTRY:
            raise ValueError(f"aggregator {name!r} is already registered")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return add


def _param_docs(cls: type) -> dict[str, str]:
    """``:param name: text`` entries of a class docstring (continuation lines joined)."""
    docs: dict[str, str] = {}
    current = None
    for line in inspect.getdoc(cls).splitlines() if cls.__doc__ else []:
        match = re.match(r"\s*:param (\w+):\s*(.*)", line)
        if match:
            current = match.group(1)
            docs[current] = match.group(2).strip()
        elif current and line.strip() and not line.lstrip().startswith(":"):
            docs[current] += " " + line.strip()
        else:
            current = None
    return docs


@functools.cache
def option_specs(name: str) -> dict[str, OptionSpec]:
    """The options of aggregator ``name``, in signature order."""
    cls = _lookup(name)
    docs = _param_docs(cls)
    params = inspect.signature(cls.__init__, eval_str=True).parameters.values()
    return {
        p.name: OptionSpec(p.name, p.annotation, p.default, docs.get(p.name, ""))
        for p in params
        if p.name not in ("self", SEED) and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def aggregator_options(name: str) -> dict[str, Any]:
    """The options of aggregator ``name`` with their defaults."""
    return {key: spec.default for key, spec in option_specs(name).items()}


@functools.cache
def _options_model(name: str) -> type[BaseModel]:
    fields: dict[str, Any] = {
        key: (spec.annotation, spec.default) for key, spec in option_specs(name).items()
    }
    config = ConfigDict(extra="forbid", allow_inf_nan=False)
    return create_model(f"{name}_options", __config__=config, **fields)


def validate_options(name: str, options: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """All options of aggregator ``name`` (defaults filled in) after checking ``options``.

    Values may be command-line text (``RawValue``); unknown options and bad values are one-line
    MtrlErrors naming the key (``<where>.<option>``, ``where`` defaulting to the name).
    """
    specs = option_specs(name)
    for key in options:
        if key not in specs:
            what = (
                f"unknown option {where}.{key} for aggregator {name!r}"
                if where
                else (f"aggregator {name!r} has no option {key!r}")
            )
            raise MtrlError(
                f"{what}{close_matches(key, specs)}; its options: {', '.join(specs) or 'none'}"
            )
    where = where or name
    values = {key: read_raw(specs[key].annotation, value) for key, value in options.items()}
    try:
        return dict(_options_model(name).model_validate(values))
    except ValidationError as exc:
        raise MtrlError(error_line(exc, where)) from None


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
