"""YAML as YAML 1.2 reads it: ``off`` and ``yes`` are strings, ``010`` is ten, ``3:20`` and
``2024-01-01`` are strings, ``3e-4`` is a number.

PyYAML parses; only the resolution of plain scalars changes, to the YAML 1.2 core schema
(null, true/false, decimal, 0o and 0x integers, floats, .inf, .nan). The writer quotes every
string that a YAML 1.1 *or* 1.2 reader would take for something else, so files it writes read
back the same in both.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import yaml

from mtrl.errors import MtrlError

NULL = "tag:yaml.org,2002:null"
BOOL = "tag:yaml.org,2002:bool"
INT = "tag:yaml.org,2002:int"
FLOAT = "tag:yaml.org,2002:float"

CORE_SCHEMA: list[tuple[str, re.Pattern[str], str]] = [
    (NULL, re.compile(r"^(?:~|null|Null|NULL|)$"), "~nN"),
    (BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), "tTfF"),
    (INT, re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"), "-+0123456789"),
    (
        FLOAT,
        re.compile(
            r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
            r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
        ),
        "-+.0123456789",
    ),
]
"""(tag, pattern, first characters) of the YAML 1.2 core schema's plain scalars."""


def _add_resolvers(cls: type, *, empty_is_null: bool) -> None:
    for tag, pattern, first in CORE_SCHEMA:
        chars = list(first) + ([""] if tag == NULL and empty_is_null else [])
        cls.add_implicit_resolver(tag, pattern, chars)


class Yaml12Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core-schema scalars."""

    yaml_implicit_resolvers: ClassVar[dict] = {}  # PyYAML's class-level registry, refilled below


def _construct_int(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> int:
    text = str(loader.construct_scalar(node))
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text, 10)  # a leading zero is decimal in YAML 1.2: 010 is ten


def _construct_float(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> float:
    text = str(loader.construct_scalar(node)).lower()
    if text.endswith(".inf"):
        return float("-inf") if text.startswith("-") else float("inf")
    if text == ".nan":
        return float("nan")
    return float(text)


def _construct_bool(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"


_add_resolvers(Yaml12Loader, empty_is_null=True)
Yaml12Loader.add_constructor(INT, _construct_int)
Yaml12Loader.add_constructor(FLOAT, _construct_float)
Yaml12Loader.add_constructor(BOOL, _construct_bool)


class Yaml12Dumper(yaml.SafeDumper):
    """PyYAML's safe dumper that also quotes strings a YAML 1.2 reader would not read as text."""

    yaml_implicit_resolvers: ClassVar[dict] = {
        key: list(value) for key, value in yaml.SafeDumper.yaml_implicit_resolvers.items()
    }


_add_resolvers(Yaml12Dumper, empty_is_null=False)


def yaml_load(text: str) -> Any:
    """Parse YAML text with YAML 1.2 core-schema scalars."""
    return yaml.load(text, Loader=Yaml12Loader)


def yaml_dump(data: Any) -> str:
    """YAML text that both YAML 1.1 and 1.2 readers read back as ``data`` (keys in order)."""
    return yaml.dump(data, Dumper=Yaml12Dumper, sort_keys=False, allow_unicode=True)


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
