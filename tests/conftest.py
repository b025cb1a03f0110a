"""Session-wide test settings."""

import os

import pytest


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
