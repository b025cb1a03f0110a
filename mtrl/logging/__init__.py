"""Logging: a logger that accumulates values and sinks that write them."""

from mtrl.logging.logger import Logger, Sink
from mtrl.logging.sinks import JsonlSink, read_metrics

__all__ = ["JsonlSink", "Logger", "Sink", "read_metrics"]
