"""Task suites: Meta-World, any gymnasium env by configuration, and a cheap built-in suite.

Importing this package registers the cheap suite's env id ``mtrl/PointMass-v0`` with gymnasium.
"""

from mtrl.envs.config import SuiteConfig, TaskConfig, list_suites, load_suite_config
from mtrl.envs.suite import KINDS, TaskSuite, load_suite, register_kind, suite_from_config

__all__ = [
    "KINDS",
    "SuiteConfig",
    "TaskConfig",
    "TaskSuite",
    "list_suites",
    "load_suite",
    "load_suite_config",
    "register_kind",
    "suite_from_config",
]
