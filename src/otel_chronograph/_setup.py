"""``install()`` and the one way every lap sink plugs in.

A *stage* is a factory ``(config, meter_provider) -> (sink, deferred) | None`` (None: off in this
config). Built-in stages (metrics, split-time display, flight recorder, billing) and third-party ones
(entry point group ``otel_chronograph.sinks``, or :func:`register_sink_factory`) are built the same way,
in that order. A stage that cannot start (a read-only outbox path, say) is a :class:`ConfigError` naming
the stage, so start-up stops instead of running on without it.
"""

from __future__ import annotations

import importlib
import logging
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider

from ._config import ChronographConfig, ConfigError, load_config
from ._lap import Lap
from .sources._processor import ChronographProcessor

__all__ = ["ENTRY_POINT_GROUP", "SinkFactory", "build_sinks", "install", "make_processor",
           "register_sink_factory"]

_log = logging.getLogger("otel_chronograph")

LapCallback = Callable[[Lap], None]
# A factory returns (sink, deferred) or None when its stage is off in this config.
SinkFactory = Callable[[ChronographConfig, "MeterProvider | None"], "tuple[LapCallback, bool] | None"]

ENTRY_POINT_GROUP = "otel_chronograph.sinks"


def _metrics(config: ChronographConfig, meter_provider: MeterProvider | None
             ) -> tuple[LapCallback, bool] | None:
    from ._metrics import LapMetrics

    sink = LapMetrics(meter_provider)
    return sink, sink.deferred


def _display(config: ChronographConfig, _: MeterProvider | None) -> tuple[LapCallback, bool] | None:
    if config.display.split_times and config.display.format != "off":
        from ._display import SplitTimeDisplay

        return SplitTimeDisplay(config.display), False
    return None


# name -> factory, or "module:attribute" imported only when built (optional extras stay optional).
_BUILTIN: dict[str, SinkFactory | str] = {
    "metrics": _metrics,
    "display": _display,
    "recorder": "otel_chronograph.recorder._sink:recorder_sink_factory",
    "billing": "otel_chronograph.billing:billing_sink_factory",
}
_REGISTERED: list[SinkFactory] = []
# The file a built-in stage opens, for the error when it cannot: (dotted key, value in this config).
_STAGE_FILES: dict[str, tuple[str, Callable[[ChronographConfig], str]]] = {
    "billing": ("chronograph.billing.meter.outbox", lambda c: c.billing.meter.outbox),
    "recorder": ("chronograph.recorder.path", lambda c: c.recorder.path),
}


def register_sink_factory(factory: SinkFactory) -> None:
    """Add a stage from code (entry points in group ``otel_chronograph.sinks`` need no call)."""
    if factory not in _REGISTERED:
        _REGISTERED.append(factory)


def _resolve(ref: SinkFactory | str) -> SinkFactory:
    if not isinstance(ref, str):
        return ref
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]


def _entry_points() -> list[tuple[str, SinkFactory]]:
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            found.append((ep.name, ep.load()))
        except Exception as exc:  # a broken plugin is named, and the others still load
            raise ConfigError(f"sink plugin {ep.name!r} ({ep.value}) cannot be loaded: {exc}") from None
    return found


# A built-in stage whose switch is off is not even imported (billing would import stripe: ~0.2 s).
_SWITCHES: dict[str, Callable[[ChronographConfig], bool]] = {
    "recorder": lambda c: c.recorder.enabled,
    "billing": lambda c: c.billing.enabled,
}


def _on(config: ChronographConfig) -> bool:
    return True


def stages(config: ChronographConfig | None = None, metrics: bool = True) -> list[tuple[str, SinkFactory]]:
    """Every stage in build order, each once (built-in ones switched off in ``config`` left out)."""
    out: list[tuple[str, SinkFactory]] = []
    seen: set[int] = set()
    candidates = [(name, _resolve(ref)) for name, ref in _BUILTIN.items()
                  if (metrics or name != "metrics")
                  and (config is None or _SWITCHES.get(name, _on)(config))]
    candidates += [(getattr(f, "__name__", "sink"), f) for f in _REGISTERED]
    candidates += _entry_points()
    for name, factory in candidates:
        if id(factory) not in seen:
            seen.add(id(factory))
            out.append((name, factory))
    return out


def build_sinks(config: ChronographConfig, meter_provider: MeterProvider | None, metrics: bool = True
                ) -> tuple[list[LapCallback], list[LapCallback]]:
    """(sinks on the lap's path, deferred sinks) for this configuration."""
    sync: list[LapCallback] = []
    deferred: list[LapCallback] = []
    if not config.enabled:
        return sync, deferred
    for name, factory in stages(config, metrics):
        try:
            made = factory(config, meter_provider)
        except (OSError, sqlite3.Error) as exc:
            where = _STAGE_FILES.get(name)
            prefix = f"{where[0]} ({where[1](config)}): " if where is not None else ""
            raise ConfigError(f"{prefix}the {name} stage cannot start: {exc}") from None
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
    return ChronographProcessor(cfg, span_processors, meter_provider, sinks=sync, deferred_sinks=deferred,
                                metrics_enabled=False, health=cfg.enabled)


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
