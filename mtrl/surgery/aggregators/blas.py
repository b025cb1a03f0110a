"""One BLAS thread around the small solvers of the weightings."""

from __future__ import annotations

import functools
from contextlib import AbstractContextManager
from typing import Any

from threadpoolctl import ThreadpoolController


@functools.cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


def single_blas_thread() -> AbstractContextManager[Any]:
    """One BLAS thread: on a T x T problem threads gain nothing, and OpenBLAS threads left
    spinning after the solve slow torch's threads on the same cores (2x on 2 cores)."""
    return _controller().limit(limits=1, user_api="blas")
