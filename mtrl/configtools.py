"""Typed configs: strict dataclass construction from dicts and ``key=value`` overrides."""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mtrl.errors import MtrlError, close_matches


class YamlLoader(yaml.SafeLoader):
    """PyYAML's safe loader, reading ``3e-4`` as a float as YAML 1.2 does (1.1 wants ``3.0e-4``)."""


YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text with ``YamlLoader``."""
    return yaml.load(text, Loader=YamlLoader)


T = TypeVar("T")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; a missing file or non-mapping content is a user error."""
    path = Path(path)
    if not path.is_file():
        raise MtrlError(f"config file not found: {path}")
    try:
        data = yaml_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise MtrlError(f"{path}: not valid YAML{where} ({problem})") from exc
    if not isinstance(data, dict):
        raise MtrlError(f"{path}: expected a mapping of keys to values at the top level")
    return data


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


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``a.b=value`` into (``"a.b"``, value), with the value parsed as YAML."""
    if "=" not in text:
        raise MtrlError(f"override {text!r} is not of the form key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise MtrlError(f"override {text!r} has an empty key")
    try:
        value = yaml_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


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


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check and convert ``value`` to the annotated type ``tp``; raise MtrlError naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except MtrlError as exc:
                errors.append(str(exc))
        raise MtrlError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise MtrlError(f"{where}: {value!r} is not one of {choices}")
        return value
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise MtrlError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (dict, Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise MtrlError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, list | tuple):
            raise MtrlError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise MtrlError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise MtrlError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise MtrlError(f"{where}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        raise MtrlError(f"{where}: expected a string, got {value!r}")
    return value


def from_dict(cls: type[T], data: Mapping[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types are one-line MtrlErrors."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{where}.{key}" if where else str(key)
        if key not in fields:
            raise MtrlError(
                f"unknown config key {full!r}{close_matches(str(key), fields)}; "
                f"valid keys{' of ' + where if where else ''}: {', '.join(fields)}"
            )
        kwargs[key] = _coerce(value, hints[key], full)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise MtrlError(f"{where or cls.__name__}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """Turn a (nested) dataclass into plain dicts and lists, ready for YAML or JSON."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    return obj
