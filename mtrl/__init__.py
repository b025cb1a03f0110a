"""mtrl: multi-task reinforcement learning with gradient surgery."""

__version__ = "0.1.0"
