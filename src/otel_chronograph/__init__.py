"""otel-chronograph: split times, status and usage billing derived from OpenTelemetry traces.

The public surface is what ``__all__`` lists; every ``_module`` is private.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._api import LapHandle, event, lap, sector
from ._config import ChronographConfig, ConfigError, load_config
from ._lap import Lap, LapEvent, SectorSpan, response
from ._pipeline import LapSink
from ._processor import ChronographProcessor
from ._setup import install, register_sink_factory

__all__ = [
    "ChronographConfig",
    "ChronographProcessor",
    "ConfigError",
    "Lap",
    "LapEvent",
    "LapHandle",
    "LapSink",
    "SectorSpan",
    "__version__",
    "event",
    "install",
    "lap",
    "load_config",
    "register_sink_factory",
    "response",
    "sector",
]
