"""otel-chronograph: split times, status and usage billing derived from OpenTelemetry traces.

The public surface is what ``__all__`` lists; every ``_module`` is private.
"""

from __future__ import annotations

from ._api import LapHandle, event, lap, sector
from ._config import ChronographConfig, ConfigError, load_config
from ._lap import Lap, LapEvent, SectorSpan, response
from ._pipeline import LapSink
from ._setup import install, register_sink_factory
from ._version import __version__
from .engine import SpanRecord
from .sources import ChronographProcessor

__all__ = [
    "ChronographConfig",
    "ChronographProcessor",
    "ConfigError",
    "Lap",
    "LapEvent",
    "LapHandle",
    "LapSink",
    "SectorSpan",
    "SpanRecord",
    "__version__",
    "event",
    "install",
    "lap",
    "load_config",
    "register_sink_factory",
    "response",
    "sector",
]
