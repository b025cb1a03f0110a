"""The typed agent config (presets in the top-level ``agents/`` folder) and surgery settings."""

from __future__ import annotations

from dataclasses import field
from typing import Annotated, Any, Literal

from annotated_types import Ge, Gt, Le, MinLen

from mtrl.configtypes import Bool, Float, Int, Text, config_class

LearningRate = Annotated[Float, Gt(0)]


@config_class
class AgentConfig:
    """MT-SAC hyperparameters; defaults follow the MT10 references (see DESIGN.md)."""

    algorithm: Text = "mtsac"
    """What trains on the suite (``mtrl.runners`` lists them): ``mtsac`` (one multi-task SAC
    with gradient surgery) or ``sb3-sac-per-task`` (one Stable-Baselines3 SAC per task, the
    single-task reference: same hyperparameters, no surgery)."""
    hidden: Annotated[list[Annotated[Int, Ge(1)]], MinLen(1)] = field(
        default_factory=lambda: [400, 400, 400]
    )
    """Hidden layer sizes of the actor and of each critic (ReLU)."""
    network: Text = "mlp"
    """The actor's and critics' architecture (``mtrl train --help`` lists them): ``mlp`` (MT-SAC),
    ``multihead`` (one output layer per task), ``film``, ..."""
    network_options: dict[str, Any] = field(default_factory=dict)
    """The architecture's options (``agent.network_options.<name>=value``); each architecture
    declares their types and ranges; the resolved config holds all of them."""
    multihead: Bool = False
    """Task-specific output heads on the shared trunk: the same as ``network=multihead`` (kept
    for older configs; only with ``network=mlp`` or ``multihead``)."""
    actor_lr: LearningRate = 3e-4
    """Adam learning rate of the actor."""
    critic_lr: LearningRate = 3e-4
    """Adam learning rate of the twin critic."""
    alpha_lr: LearningRate = 3e-4
    """Adam learning rate of the per-task log-temperatures."""
    adam_eps: Annotated[Float, Gt(0)] = 1e-8
    """Adam's epsilon for the actor, critic and temperature optimisers (torch's default 1e-8;
    the Meta-World+ reference uses 1e-5)."""
    init: Literal["torch", "metaworld"] = "torch"
    """Weight initialisation: ``torch`` (nn.Linear's default) or ``metaworld`` (the Meta-World+
    reference: He-uniform hidden layers with zero biases, output layers U(±1e-3) for the actor
    and U(±3e-3) for the critic)."""
    gamma: Annotated[Float, Ge(0), Le(1)] = 0.99
    """Discount factor."""
    tau: Annotated[Float, Gt(0), Le(1)] = 0.005
    """Polyak averaging rate of the target critic."""
    init_alpha: Annotated[Float, Gt(0)] = 1.0
    """Initial entropy temperature of every task."""
    target_entropy: Float | None = None
    """Target entropy per task; None means -|A|."""
    log_std_min: Float = -20.0
    """Lower bound of the actor's log standard deviation."""
    log_std_max: Float = 2.0
    """Upper bound of the actor's log standard deviation."""
    grad_clip: Annotated[Float, Gt(0)] | None = None
    """Clip the aggregated gradient of each network to this norm (None: no clipping)."""
    batch_size: Annotated[Int, Ge(1)] = 128
    """Transitions sampled per task for each update (the batch is [T, batch_size])."""
    critics: Annotated[Int, Ge(1)] = 2
    """Critics in the ensemble (2: the usual twin critic with a min target)."""
    task_grads: Literal["auto", "layers", "vmap", "loop"] = "auto"
    """How per-task gradients are formed: ``layers`` (one fused backward and one batched product
    per linear layer; exact, about the cost of one backward), ``vmap`` (torch.func over the task
    axis; any network), ``loop`` (one backward per task; the slow reference); ``auto`` picks
    ``layers`` where every layer has a rule, else ``vmap``."""

    def __post_init__(self) -> None:
        from mtrl.agents.registry import network_class, validate_network_options

        network_class(self.network)  # a one-line error for an unknown name
        if self.multihead and self.network not in ("mlp", "multihead"):
            raise ValueError(f"multihead=true goes with network=mlp, not {self.network!r}")
        if self.multihead:
            self.network = "multihead"  # one name for the architecture from here on
        self.network_options = validate_network_options(self.network, self.network_options)
        if self.log_std_min >= self.log_std_max:
            raise ValueError(
                f"log_std_min ({self.log_std_min:g}) must be below log_std_max "
                f"({self.log_std_max:g})"
            )


@config_class
class SurgeryConfig:
    """Which aggregator combines the per-task gradients, and of which networks."""

    name: Text = "mean"
    """Aggregator name (``mtrl aggregators`` lists them); ``mean`` is plain MT-SAC."""
    networks: Literal["both", "critic", "actor"] = "both"
    """Networks whose per-task gradients go through the aggregator; the others use ``mean``."""
    options: dict[str, Any] = field(default_factory=dict)
    """Aggregator options, e.g. ``{c: 0.5}`` for cagrad (on the CLI: ``surgery.c=0.5``); each
    aggregator declares their types and ranges (``mtrl aggregators`` lists them)."""
