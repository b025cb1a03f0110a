"""Config plumbing: ``key=value`` overrides read by the type of their key, presets, validation.

An override's value stays text (``RawValue``) until the type of its key is known: a key that
takes text (``name``, ``out``, ``logger.wandb``) keeps the text as written, any other key reads
it as YAML 1.2 (``010`` is ten, ``[400, 400]`` a list). ``from_dict`` then validates against the
typed config classes (``mtrl.configtypes``) and turns the first failure into one line.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import TypeAdapter, ValidationError

from mtrl.configtypes import accepts_none, error_line, wants_text
from mtrl.errors import MtrlError, close_matches
from mtrl.yamlio import load_yaml, yaml_load

__all__ = [
    "RawValue",
    "from_dict",
    "list_presets",
    "load_yaml",
    "parse_override",
    "preset_path",
    "read_raw",
    "set_dotted",
    "to_dict",
    "yaml_load",
]

T = TypeVar("T")


class RawValue(str):
    """The text of a command-line value, to be read once the type of its key is known."""


def preset_path(name_or_path: str, folder: Path, what: str) -> Path:
    """A YAML file given by path, or by preset name in ``folder``; errors list the presets."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise MtrlError(f"{what} file not found: {path}")
        return path
    preset = folder / f"{name_or_path}.yaml"
    if not preset.is_file():
        names = sorted(p.stem for p in folder.glob("*.yaml"))
        raise MtrlError(
            f"unknown {what} {name_or_path!r}{close_matches(name_or_path, names)}; "
            f"presets: {', '.join(names)} (or give a path to a .yaml file)"
        )
    return preset


def list_presets(folder: Path) -> dict[str, str]:
    """Preset names in ``folder`` with the ``description`` line of each."""
    return {p.stem: str(load_yaml(p).get("description", "")) for p in sorted(folder.glob("*.yaml"))}


def parse_override(text: str) -> tuple[str, RawValue]:
    """Split ``a.b=value`` into (``"a.b"``, the value's text as a ``RawValue``)."""
    if "=" not in text:
        raise MtrlError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise MtrlError(f"override {text!r} has an empty key")
    return key, RawValue(raw.strip())


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``key="a.b"``, creating mappings on the way."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


_NULLS = ("", "~", "null", "Null", "NULL")


def read_text(text: str, tp: Any) -> Any:
    """The value ``text`` stands for where type ``tp`` is expected."""
    if wants_text(tp):
        return None if accepts_none(tp) and text in _NULLS else str(text)
    try:
        return yaml_load(text)
    except yaml.YAMLError:
        return str(text)


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def _is_config_class(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def read_raw(tp: Any, value: Any) -> Any:
    """``value`` with every ``RawValue`` in it read by the type of its place in ``tp``."""
    if isinstance(value, RawValue):
        return read_text(value, tp)
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(value, Mapping):
        if _is_config_class(tp):
            types_ = _field_types(tp)
            return {k: read_raw(types_.get(k, Any), v) for k, v in value.items()}
        item = args[1] if origin in (dict, Mapping) and len(args) == 2 else Any
        return {k: read_raw(item, v) for k, v in value.items()}
    if isinstance(value, list):
        item = args[0] if origin in (list, tuple) and args else Any
        return [read_raw(item, v) for v in value]
    return value


def valid_keys(cls: type, loc: tuple[Any, ...]) -> list[str]:
    """The keys of the config section at ``loc`` inside ``cls`` (empty if not a section)."""
    tp: Any = cls
    for part in loc:
        if not _is_config_class(tp) or isinstance(part, int):
            return []
        tp = _field_types(tp).get(str(part))
        while typing.get_origin(tp) is typing.Annotated:
            tp = typing.get_args(tp)[0]
    return list(_field_types(tp)) if _is_config_class(tp) else []


@functools.cache
def _adapter(cls: type) -> TypeAdapter:
    return TypeAdapter(cls)


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build config class ``cls`` from ``data``: unknown keys, bad types and out-of-range values
    are one-line MtrlErrors naming the key (prefixed by ``where``), the value and what is
    allowed."""
    if not isinstance(data, Mapping):
        raise MtrlError(f"{where or cls.__name__}: expected a mapping, got {data!r}")
    try:
        return _adapter(cls).validate_python(read_raw(cls, data))
    except ValidationError as exc:
        raise MtrlError(error_line(exc, where, lambda loc: valid_keys(cls, loc))) from None


def to_dict(obj: Any) -> Any:
    """Turn a (nested) dataclass into plain dicts and lists, ready for YAML or JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj
