"""Typed, ranged config fields, validated by pydantic, and one-line messages for bad values.

A config class is a dataclass decorated with ``config_class``; each field declares its type and
range once, in its annotation::

    @config_class
    class EvalConfig:
        episodes: Annotated[Int, Field(ge=1)] = 10
        \"\"\"Episodes per task.\"\"\"

The scalar types are strict where YAML and the command line could blur them: booleans are never
numbers (``Int``, ``Float`` refuse ``true``), numbers are never booleans (``Bool`` refuses ``1``),
an integral float is an integer (``steps=2e6``), and a number where text is expected is text.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import annotated_types
from pydantic import BeforeValidator, ConfigDict, Strict, StrictBool, ValidationError
from pydantic.dataclasses import dataclass as pydantic_dataclass

from mtrl.errors import close_matches


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _number_as_text(value: Any) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


Int = Annotated[int, BeforeValidator(_integral), Strict()]
"""An integer; ``2e6`` and ``3.0`` count, ``true`` and ``"3"`` do not."""
Float = Annotated[float, Strict()]
"""A finite number (an integer counts); ``true`` and ``"3"`` do not."""
Bool = StrictBool
"""``true`` or ``false``; never ``1`` or ``"yes"``."""
Text = Annotated[str, BeforeValidator(_number_as_text), Strict()]
"""Text; a number where text is expected is taken as written (``name=2024``)."""


def _switch(value: Any) -> Any:
    if isinstance(value, bool) or value == "auto":
        return value
    raise ValueError("expected true, false or auto")


AutoBool = Annotated[Literal["auto", True, False], BeforeValidator(_switch)]
"""``true``, ``false`` or ``auto`` (decided from the run's settings); never ``1``."""

CONFIG = ConfigDict(
    extra="forbid",
    allow_inf_nan=False,
    use_attribute_docstrings=True,
    validate_assignment=True,
)
"""Unknown keys are errors, NaN and inf are refused, attribute docstrings document fields."""

C = TypeVar("C", bound=type)


def config_class(cls: C) -> C:
    """Make ``cls`` a validated dataclass: its annotations are the single source of truth."""
    return typing.cast(C, pydantic_dataclass(config=CONFIG)(cls))


# --------------------------------------------------------------------------- describing types
def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """(bare type, constraint metadata) of a possibly ``Annotated`` type."""
    metadata: list[Any] = []
    while typing.get_origin(tp) is Annotated:
        args = typing.get_args(tp)
        tp, metadata = args[0], [*metadata, *args[1:]]
    return tp, metadata


def _constraint_text(metadata: list[Any]) -> str:
    parts = []
    for item in metadata:
        for inner in getattr(item, "metadata", [item]):  # FieldInfo holds a list
            for attr, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
                if isinstance(inner, getattr(annotated_types, attr.capitalize())):
                    parts.append(f"{symbol} {getattr(inner, attr)}")
    return " and ".join(parts)


def _non_empty(metadata: list[Any]) -> bool:
    return any(
        isinstance(inner, annotated_types.MinLen) and inner.min_length > 0
        for item in metadata
        for inner in getattr(item, "metadata", [item])
    )


_NAMES = {int: "integer", float: "number", bool: "true|false", str: "text"}


def type_text(tp: Any) -> str:
    """A short description of what a field accepts, e.g. ``number >= 0`` or ``sum|mean``."""
    tp, metadata = _unwrap(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join("null" if a is type(None) else type_text(a) for a in args)
    if origin is Literal:
        return "|".join(str(a).lower() if isinstance(a, bool) else str(a) for a in args)
    if origin in (list, tuple):
        inner = type_text(args[0]) if args else "value"
        text = f"list of ({inner})" if " " in inner else f"list of {inner}"
    elif origin is dict or tp is dict:
        text = "mapping"
    elif tp is Any:
        text = "any"
    elif isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
        text = "mapping"
    else:
        text = _NAMES.get(tp, getattr(tp, "__name__", str(tp)))
    if _non_empty(metadata):
        text = f"non-empty {text}"
    constraint = _constraint_text(metadata)
    return f"{text} {constraint}" if constraint else text


def wants_text(tp: Any) -> bool:
    """True if ``tp`` takes text and no other scalar (text, optional text, or text choices)."""
    tp, _ = _unwrap(tp)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        return bool(rest) and all(wants_text(a) for a in rest)
    if origin is Literal:
        return all(isinstance(a, str) for a in args)
    return tp is str


def accepts_none(tp: Any) -> bool:
    """True if ``None`` is a valid value of ``tp``."""
    tp, _ = _unwrap(tp)
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in (
        typing.get_args(tp)
    )


# --------------------------------------------------------------------------- error messages
def _allowed(error: dict[str, Any]) -> str:
    kind, ctx = error["type"], error.get("ctx") or {}
    simple = {
        "int_type": "expected an integer",
        "int_from_float": "expected an integer",
        "float_type": "expected a number",
        "finite_number": "expected a finite number",
        "bool_type": "expected true or false",
        "string_type": "expected text",
        "list_type": "expected a list, e.g. [1, 2]",
        "dict_type": "expected a mapping",
        "missing": "is required",
        "missing_argument": "is required",
    }
    if kind in simple:
        return simple[kind]
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<="}
    bounds["less_than"] = "<"
    if kind in bounds:
        limit = next(iter(ctx.values()))
        if isinstance(limit, float) and limit.is_integer():
            limit = int(limit)
        return f"must be {bounds[kind]} {limit}"
    if kind == "literal_error":
        return f"must be {ctx.get('expected', '')}".replace("'", "")
    if kind == "too_short":
        return f"needs at least {ctx.get('min_length')} item(s)"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return str(error["msg"][0].lower() + error["msg"][1:])


def _show(value: Any) -> str:
    """A value as the user would write it: text quoted, true/false/null, lists in brackets."""
    return repr(value) if isinstance(value, str) else json.dumps(value, default=str)


def _key(where: str, loc: tuple[Any, ...]) -> str:
    text = where
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def error_line(
    exc: ValidationError,
    where: str = "",
    keys_of: Callable[[tuple[Any, ...]], list[str]] | None = None,
) -> str:
    """One line for the first error of ``exc``: the key, the value given, and what is allowed.

    :param where: the prefix of the keys (e.g. ``agent``).
    :param keys_of: the valid keys at a location, for unknown-key errors ("did you mean ...").
    """
    errors = exc.errors()
    error = errors[0]
    loc = tuple(error["loc"])
    key = _key(where, loc)
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    if error["type"] in ("unexpected_keyword_argument", "extra_forbidden"):
        valid = keys_of(loc[:-1]) if keys_of else []
        hint = close_matches(str(loc[-1]), valid) if valid else ""
        listing = f"; valid keys: {', '.join(valid)}" if valid else ""
        return f"unknown config key {key!r}{hint}{listing}"
    if error["type"] == "value_error" and not loc:  # a check across fields of a section
        return f"{where + ': ' if where else ''}{_allowed(error)}{more}"
    return f"{key}={_show(error['input'])}: {_allowed(error)}{more}"
