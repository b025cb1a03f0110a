"""Session-wide test settings."""

import os
import sys
from pathlib import Path

import pytest

# Without a GPU the solvers' Triton kernels (fused_ip) run in Triton's interpreter, which
# triton reads from the environment when its kernels are defined.
try:
    import torch

    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")
except ImportError:  # pragma: no cover
    pass

# The plug-in envs of the tests (plugin_envs, rollout_faulty_env) import by name, here and in the
# rollout workers spawned from here (they inherit sys.path).
TESTS_DIR = str(Path(__file__).resolve().parent)
if TESTS_DIR not in sys.path:
    sys.path.insert(0, TESTS_DIR)


@pytest.fixture(scope="session", autouse=True)
def goal_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """Keep Meta-World's goal cache of this test session out of the user's ~/.cache."""
    previous = os.environ.get("MTRL_CACHE_DIR")
    os.environ["MTRL_CACHE_DIR"] = str(tmp_path_factory.mktemp("mtrl-cache"))
    yield
    if previous is None:
        os.environ.pop("MTRL_CACHE_DIR", None)
    else:
        os.environ["MTRL_CACHE_DIR"] = previous
