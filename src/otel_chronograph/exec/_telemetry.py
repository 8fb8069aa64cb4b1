"""Tracing (and metrics) for ``chronograph exec`` and ``exec-server``, configured the standard way.

The exporters come from ``OTEL_TRACES_EXPORTER`` / ``OTEL_METRICS_EXPORTER`` and the
``OTEL_EXPORTER_OTLP_*`` variables, through the SDK's own exporter lookup (entry points), so anything
``opentelemetry-instrument`` accepts works here. One decision differs from the SDK default, as otel-cli
does: with no exporter named and no OTLP endpoint set, nothing is exported (a CLI wrapper that retries
against an absent localhost:4317 would slow every run and fill stderr); the lap is still derived, shown
and billed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

from .._config import ConfigError

__all__ = ["ReservingIds", "Telemetry", "exporting_processors", "meter_provider", "resource"]

_ENDPOINTS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def _exporter_names(signal: str, environ: Mapping[str, str]) -> list[str]:
    variable = f"OTEL_{signal.upper()}_EXPORTER"
    named = environ.get(variable, "").strip().lower() not in ("", "none")
    endpoint_set = signal == "traces" and variable not in environ and any(environ.get(v) for v in _ENDPOINTS)
    if not named and not endpoint_set:
        return []  # the common case costs no import of the SDK's configuration module (~70 ms)
    from opentelemetry.sdk._configuration import _get_exporter_entry_point, _get_exporter_names

    if named:
        return list(_get_exporter_names(signal))  # type: ignore[arg-type]
    return [_get_exporter_entry_point("otlp", "traces")]


def exporting_processors(environ: Mapping[str, str] | None = None) -> list[SpanProcessor]:
    """One ``BatchSpanProcessor`` per configured trace exporter. Raises :class:`ConfigError`."""
    env = os.environ if environ is None else environ
    try:
        names = _exporter_names("traces", env)
        if not names:
            return []
        from opentelemetry.sdk._configuration import _import_exporters
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        exporters, _, _ = _import_exporters(names, [], [])
        return [BatchSpanProcessor(cls()) for cls in exporters.values()]
    except (RuntimeError, ValueError, ImportError) as exc:
        raise ConfigError(f"OTEL_TRACES_EXPORTER / OTEL_EXPORTER_OTLP_*: cannot build the trace exporter: "
                          f"{exc}") from None


def meter_provider(res: Resource, environ: Mapping[str, str] | None = None) -> Any:
    """An SDK ``MeterProvider`` when ``OTEL_METRICS_EXPORTER`` names exporters, else None (no-op)."""
    env = os.environ if environ is None else environ
    try:
        names = _exporter_names("metrics", env)
        if not names:
            return None
        from opentelemetry.sdk._configuration import _import_exporters
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader

        _, exporters, _ = _import_exporters([], names, [])
        readers = [cls() if issubclass(cls, MetricReader) else PeriodicExportingMetricReader(cls())
                   for cls in exporters.values()]
        return MeterProvider(resource=res, metric_readers=readers)
    except (RuntimeError, ValueError, ImportError) as exc:
        raise ConfigError(f"OTEL_METRICS_EXPORTER: cannot build the metric exporter: {exc}") from None


def resource(default_service: str) -> Resource:
    """The resource from ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``, else ``default_service``."""
    res = Resource.create()
    if str(res.attributes.get("service.name", "")).startswith("unknown_service"):
        res = res.merge(Resource({"service.name": default_service}))
    return res


class ReservingIds(IdGenerator):
    """Random ids, except that a span id can be reserved before its span starts: the child must be
    given the ``run`` sector's ``TRACEPARENT`` before it is spawned, and ``run`` starts after spawning.
    The reservation lives in a ContextVar, so concurrent runs (server tasks) never take each other's."""

    def __init__(self) -> None:
        self._random = RandomIdGenerator()
        self._next: ContextVar[int | None] = ContextVar("chronograph_reserved_span_id", default=None)

    def reserve(self) -> int:
        span_id = self._random.generate_span_id()
        self._next.set(span_id)
        return span_id

    def release(self) -> None:
        self._next.set(None)

    def generate_span_id(self) -> int:
        reserved = self._next.get()
        if reserved is None:
            return self._random.generate_span_id()
        self._next.set(None)
        return reserved

    def generate_trace_id(self) -> int:
        return self._random.generate_trace_id()


@dataclass
class Telemetry:
    """What a run's tracing needs: the provider, the exporting processors, an optional MeterProvider."""

    provider: TracerProvider
    exporting: list[SpanProcessor]
    meters: Any = None
    ids: ReservingIds = field(default_factory=ReservingIds)

    @classmethod
    def from_environment(cls, default_service: str) -> Telemetry:
        res = resource(default_service)
        ids = ReservingIds()
        return cls(TracerProvider(resource=res, id_generator=ids, shutdown_on_exit=False),
                   exporting_processors(), meter_provider(res), ids)

    def shutdown(self) -> None:
        """Traces first (laps derived, spans exported), then metrics (the laps' points included)."""
        self.provider.shutdown()
        if self.meters is not None:
            self.meters.shutdown()
