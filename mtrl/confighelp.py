"""Help texts generated from the typed configs: every key of ``mtrl train`` and every aggregator
option, with its type, range, default and docstring, so ``--help`` never drifts from the code."""

from __future__ import annotations

import dataclasses
import textwrap
import typing
from collections.abc import Iterator
from typing import Any

from mtrl.configtypes import type_text

WIDTH = 100
INDENT = 6


def _field_doc(cls: type, name: str) -> str:
    info = getattr(cls, "__pydantic_fields__", {}).get(name)
    return " ".join((info.description or "").split()) if info is not None else ""


def _default(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return dataclasses.MISSING


def _show(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return value if value else "''"
    return str(value)


def config_keys(cls: type, prefix: str = "") -> Iterator[tuple[str, str, str, str]]:
    """(key, accepted values, default, description) of every field of config class ``cls``;
    nested config classes are walked with a dotted prefix."""
    hints = typing.get_type_hints(cls, include_extras=True)
    for field in dataclasses.fields(cls):
        tp = hints[field.name]
        key = f"{prefix}{field.name}"
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            yield from config_keys(tp, f"{key}.")
            continue
        default = _default(field)
        shown = "required" if default is dataclasses.MISSING else _show(default)
        yield key, type_text(tp), shown, _field_doc(cls, field.name)


def _entry(key: str, accepts: str, default: str, doc: str, width: int = WIDTH) -> str:
    head = f"  {key}={default}  ({accepts})"
    body = textwrap.fill(doc, width, initial_indent=" " * INDENT, subsequent_indent=" " * INDENT)
    return f"{head}\n{body}" if doc else head


def train_keys_text() -> str:
    """Every ``key=value`` that ``mtrl train`` takes, grouped as the config is."""
    from mtrl.agents.config import AgentConfig, SurgeryConfig
    from mtrl.config import TrainConfig
    from mtrl.envs.config import SuiteConfig

    lines = ["run keys:"]
    for key, accepts, default, doc in config_keys(TrainConfig):
        if key.startswith(("agent.", "surgery.")) or key in ("suite_overrides", "agent_preset"):
            continue  # listed with their sections below
        if key == "suite":
            doc += " suite.KEY=V overrides a field of the suite (suite keys below)."
        lines.append(_entry(key, accepts, default, doc))
    lines += ["", "agent keys (agent=NAME|PATH picks the preset under agents/):"]
    lines += [_entry(*entry) for entry in config_keys(AgentConfig, "agent.")]
    lines += ["", "surgery keys (surgery.OPTION=V sets an aggregator option: mtrl aggregators):"]
    lines += [
        _entry(*entry)
        for entry in config_keys(SurgeryConfig, "surgery.")
        if entry[0] != "surgery.options"
    ]
    lines += ["", "suite keys (defaults come from the suite preset):"]
    lines += [_entry(*entry) for entry in config_keys(SuiteConfig, "suite.")]
    return "\n".join(lines)


def aggregators_text() -> str:
    """Each registered aggregator: what it does, its paper, kind, traits and options."""
    from mtrl.surgery import aggregator_class, get_aggregator, list_aggregators, option_specs

    lines = [
        "gradient methods combine the T per-task gradients; loss methods weight the T losses",
        "before one fused backward (the cost of mean).",
        "",
    ]
    for name, description in list_aggregators().items():
        cls = aggregator_class(name)
        traits = [cls.kind]
        traits += [t for t in ("stochastic", "stateful") if getattr(cls, t)]
        traits.append("device" if cls.device_solver else "host")
        if get_aggregator(name).capturable():
            traits.append(f"graph up to {cls.graph_tasks} tasks" if cls.graph_tasks else "graph")
        traits += ["fused"] if cls.fusable else []
        paper = f"; {cls.paper}" if cls.paper else ""
        lines.append(f"{name}: {description} ({', '.join(traits)}{paper})")
        specs = option_specs(name).values()
        if not specs:
            lines.append("      no options")
        for spec in specs:
            lines.append(
                _entry(f"  surgery.{spec.name}", spec.accepts, _show(spec.default), spec.doc)
            )
        lines.append("")
    lines.append(
        "stochastic methods are seeded by the run seed; stateful ones are saved in checkpoints"
    )
    lines.append(
        "device: weights computed by tensor ops on the gradients' device; host: on the CPU"
    )
    lines.append("(Gramian methods copy the Gramian there: a sync on a GPU)")
    lines.append(
        "graph: an update with it is captured in a CUDA graph on a GPU (compile=auto); "
        "surgery.solver=auto takes the device solver there"
    )
    lines.append("fused: its solver runs as Triton kernels in a captured update (fused_solvers)")
    lines.append("use: mtrl train EXPERIMENT surgery=NAME surgery.OPTION=VALUE")
    return "\n".join(lines)


def networks_text() -> str:
    """Each registered architecture: what it is and its options."""
    from mtrl.agents.registry import list_networks, network_options

    lines = []
    for name, description in list_networks().items():
        lines.append(f"{name}: {description}")
        specs = network_options(name).values()
        if not specs:
            lines.append("      no options")
        for spec in specs:
            key = f"  agent.network_options.{spec.name}"
            lines.append(_entry(key, spec.accepts, _show(spec.default), spec.doc))
        lines.append("")
    lines.append("every architecture combines with every aggregator (surgery=NAME)")
    lines.append("use: mtrl train EXPERIMENT agent.network=NAME agent.network_options.OPTION=VALUE")
    return "\n".join(lines)
