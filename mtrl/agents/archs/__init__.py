"""Multi-task architectures beside the MLP, each registered under its ``agent.network`` name."""

from mtrl.agents.archs import care, film, moore, paco, soft_modules  # noqa: F401
