"""The typed agent config (presets in the top-level ``agents/`` folder) and surgery settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass
class AgentConfig:
    """MT-SAC hyperparameters; defaults follow the MT10 references (see DESIGN.md)."""

    algorithm: str = "mtsac"
    """What trains on the suite (``mtrl.runners`` lists them): ``mtsac`` (one multi-task SAC
    with gradient surgery) or ``sb3-sac-per-task`` (one Stable-Baselines3 SAC per task, the
    single-task reference: same hyperparameters, no surgery)."""
    hidden: list[int] = field(default_factory=lambda: [400, 400, 400])
    """Hidden layer sizes of the actor and of each critic (ReLU)."""
    multihead: bool = False
    """Task-specific output heads on the shared trunk, selected by the one-hot task id."""
    actor_lr: float = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: float = 3e-4
    """Adam learning rate of the twin critic."""
    alpha_lr: float = 3e-4
    """Adam learning rate of the per-task log-temperatures."""
    gamma: float = 0.99
    """Discount factor."""
    tau: float = 0.005
    """Polyak averaging rate of the target critic."""
    init_alpha: float = 1.0
    """Initial entropy temperature of every task."""
    target_entropy: float | None = None
    """Target entropy per task; None means -|A|."""
    log_std_min: float = -20.0
    """Lower bound of the actor's log standard deviation."""
    log_std_max: float = 2.0
    """Upper bound of the actor's log standard deviation."""
    grad_clip: float | None = None
    """Clip the aggregated gradient of each network to this norm (None: no clipping)."""
    batch_size: int = 128
    """Transitions sampled per task for each update (the batch is [T, batch_size])."""
    critics: int = 2
    """Critics in the ensemble (2: the usual twin critic with a min target)."""


@dataclass
class SurgeryConfig:
    """Which aggregator combines the per-task gradients, and of which networks."""

    name: str = "mean"
    """Aggregator name (``mtrl aggregators`` lists them); ``mean`` is plain MT-SAC."""
    networks: Literal["both", "critic", "actor"] = "both"
    """Networks whose per-task gradients go through the aggregator; the others use ``mean``."""
    options: dict[str, Any] = field(default_factory=dict)
    """Aggregator options, e.g. ``{c: 0.5}`` for cagrad (on the CLI: ``surgery.c=0.5``)."""
