"""Options declared by an annotated signature: read, documented and validated in one place.

A class's options are the keyword arguments of its ``__init__``, each declared once with its
type and range in the annotation (e.g. ``c: Annotated[Float, Ge(0)] = 0.4``) and described by a
``:param c:`` line of the class docstring. Aggregators and network architectures use this.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from mtrl.configtools import read_raw
from mtrl.configtypes import error_line, type_text
from mtrl.errors import MtrlError, close_matches


@dataclass(frozen=True)
class OptionSpec:
    """One option: its annotated type, default and description."""

    name: str
    annotation: Any
    default: Any
    doc: str

    @property
    def accepts(self) -> str:
        """What values the option takes, e.g. ``number >= 0``."""
        return type_text(self.annotation)


def param_docs(cls: type) -> dict[str, str]:
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


def signature_options(cls: type, exclude: Collection[str] = ()) -> dict[str, OptionSpec]:
    """The keyword arguments of ``cls.__init__`` (less ``exclude``), in signature order."""
    docs = param_docs(cls)
    params = inspect.signature(cls.__init__, eval_str=True).parameters.values()
    return {
        p.name: OptionSpec(p.name, p.annotation, p.default, docs.get(p.name, ""))
        for p in params
        if p.name != "self"
        and p.name not in exclude
        and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
    }


def options_model(title: str, specs: Mapping[str, OptionSpec]) -> type[BaseModel]:
    """A pydantic model checking values against ``specs`` (unknown keys forbidden)."""
    fields: dict[str, Any] = {key: (s.annotation, s.default) for key, s in specs.items()}
    config = ConfigDict(extra="forbid", allow_inf_nan=False)
    return create_model(title, __config__=config, **fields)


def check_options(
    specs: Mapping[str, OptionSpec],
    model: type[BaseModel],
    options: Mapping[str, Any],
    where: str,
    unknown: str,
) -> dict[str, Any]:
    """All options (defaults filled in) after checking ``options`` (values may be command-line
    text). An unknown key raises ``unknown`` (formatted with ``key``) plus close matches; a bad
    value is one line naming ``<where>.<key>``."""
    for key in options:
        if key not in specs:
            raise MtrlError(
                f"{unknown.format(key=key)}{close_matches(key, specs)}; "
                f"its options: {', '.join(specs) or 'none'}"
            )
    values = {key: read_raw(specs[key].annotation, value) for key, value in options.items()}
    try:
        return dict(model.model_validate(values))
    except ValidationError as exc:
        raise MtrlError(error_line(exc, where)) from None
