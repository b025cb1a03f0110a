"""Logging: a logger that accumulates values and sinks that write them.

The metrics file and console lines live in ``sinks``; TensorBoard and W&B in their own modules,
imported only when a run asks for them. Metric names are listed in docs/metrics.md.
"""

from mtrl.logging.logger import Logger, Sink
from mtrl.logging.sinks import ConsoleSink, JsonlSink, read_metrics

__all__ = ["ConsoleSink", "JsonlSink", "Logger", "Sink", "read_metrics"]
