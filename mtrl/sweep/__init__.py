"""Sweeps: grids of methods x seeds x hyperparameters, run as ordinary runs on Ray Tune.

Ray is an optional extra (``pip install 'mtrl-bench[sweep]'``); only ``mtrl.sweep.runner`` and
``mtrl.sweep.trial`` import it, when a sweep runs.
"""

from mtrl.sweep.grid import GridAxis, Trial, expand, parse_grid, parse_seeds
from mtrl.sweep.runner import SweepSpec, run_sweep

__all__ = ["GridAxis", "SweepSpec", "Trial", "expand", "parse_grid", "parse_seeds", "run_sweep"]
