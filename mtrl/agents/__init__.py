"""Agents: multi-task SAC with per-task losses routed through gradient surgery."""

from mtrl.agents.config import AgentConfig, SurgeryConfig
from mtrl.agents.sac import MTSAC, polyak_update

__all__ = ["MTSAC", "AgentConfig", "SurgeryConfig", "polyak_update"]

from mtrl.agents import archs  # noqa: F401  (registers the architectures)
