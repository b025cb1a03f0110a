"""Multi-task architectures beside the MLP, each registered under its ``agent.network`` name."""

from mtrl.agents.archs import film, moore  # noqa: F401
