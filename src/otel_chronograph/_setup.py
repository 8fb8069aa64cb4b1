"""``install()``: put the chronograph processor on a TracerProvider with the sinks the config asks for.

Sinks are built by small factories, one per stage, so billing and the flight recorder plug in here
without the processor knowing about them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from ._config import ChronographConfig, load_config
from ._display import SplitTimeDisplay
from ._lap import Lap
from ._processor import ChronographProcessor

__all__ = ["SinkFactory", "build_sinks", "install", "register_sink_factory"]

LapCallback = Callable[[Lap], None]
# A factory returns (sink, deferred) or None when its stage is off in this config.
SinkFactory = Callable[[ChronographConfig, "MeterProvider | None"], "tuple[LapCallback, bool] | None"]


def _display(config: ChronographConfig, _: MeterProvider | None) -> tuple[LapCallback, bool] | None:
    if config.display.split_times and config.display.format != "off":
        return SplitTimeDisplay(config.display), False
    return None


_FACTORIES: list[SinkFactory] = [_display]


def register_sink_factory(factory: SinkFactory) -> None:
    """Add a stage (billing, recorder, ...) that builds a sink from the config."""
    if factory not in _FACTORIES:
        _FACTORIES.append(factory)


def _load_builtin_stages() -> None:
    # Stages living in optional modules register themselves on import; absent ones are skipped.
    import importlib

    for mod in ("otel_chronograph.billing", "otel_chronograph.recorder"):
        try:
            importlib.import_module(mod)
        except ImportError as exc:
            if exc.name is None or not exc.name.startswith(mod):
                raise


def build_sinks(config: ChronographConfig, meter_provider: MeterProvider | None
                ) -> tuple[list[LapCallback], list[LapCallback]]:
    """(sinks on the lap's path, deferred sinks) for this configuration."""
    _load_builtin_stages()
    sync: list[LapCallback] = []
    deferred: list[LapCallback] = []
    if not config.enabled:
        return sync, deferred
    for factory in _FACTORIES:
        made = factory(config, meter_provider)
        if made is not None:
            sink, is_deferred = made
            (deferred if is_deferred else sync).append(sink)
    return sync, deferred


def make_processor(
    config: str | os.PathLike[str] | Mapping[str, Any] | ChronographConfig | None = None,
    span_processors: Sequence[SpanProcessor] = (),
    meter_provider: MeterProvider | None = None,
) -> ChronographProcessor:
    cfg = load_config(config)
    sync, deferred = build_sinks(cfg, meter_provider)
    return ChronographProcessor(cfg, span_processors, meter_provider, sinks=sync, deferred_sinks=deferred)


def install(
    provider: TracerProvider | None = None,
    span_processors: Sequence[SpanProcessor] = (),
    config: str | os.PathLike[str] | Mapping[str, Any] | ChronographConfig | None = None,
    meter_provider: MeterProvider | None = None,
) -> ChronographProcessor:
    """Add the chronograph processor to ``provider`` (default: the global one), wrapping the exporting
    processors so lap spans reach them annotated. Returns the processor."""
    if provider is None:
        current = trace.get_tracer_provider()
        if not isinstance(current, TracerProvider):
            raise TypeError("chronograph.install needs an SDK TracerProvider: pass provider= or call "
                            "trace.set_tracer_provider(TracerProvider()) first")
        provider = current
    processor = make_processor(config, span_processors, meter_provider)
    provider.add_span_processor(processor)
    return processor
