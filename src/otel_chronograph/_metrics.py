"""Metrics sink: SPEC.md's instruments through the OpenTelemetry metrics API (meter ``otel_chronograph``).

Histogram points go through ``record`` (the only API for histograms). Everything that is a running
total (cost, the plugin's health counters) is kept in plain integers/Decimals here and reported by
observable instruments at collection time, which costs nothing per lap.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from ._lap import Lap

__all__ = ["METER_NAME", "LapMetrics", "observe_counter", "observe_gauge"]

METER_NAME = "otel_chronograph"
_EMPTY = Context()  # no exemplar sampling or context lookup per point: these are derived values
_MAX_CACHED = 10_000  # attribute dicts kept for reuse; beyond this (runaway cardinality) build per point


def _meter(meter_provider: MeterProvider | None) -> metrics.Meter:
    from ._version import __version__

    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    return provider.get_meter(METER_NAME, __version__)


def observe_gauge(meter_provider: MeterProvider | None, name: str, read: Callable[[], float],
                  description: str, unit: str = "{item}") -> None:
    """An observable gauge that reads ``read()`` at collection time."""

    def callback(_: CallbackOptions) -> Iterable[Observation]:
        return [Observation(read())]

    _meter(meter_provider).create_observable_gauge(name, [callback], unit=unit, description=description)


def observe_counter(meter_provider: MeterProvider | None, name: str,
                    read: Callable[[], Iterable[tuple[float, dict[str, Any]]]],
                    description: str, unit: str = "{item}") -> None:
    """An observable (monotonic) counter whose cumulative values come from ``read()``."""

    def callback(_: CallbackOptions) -> Iterable[Observation]:
        return [Observation(value, attrs) for value, attrs in read()]

    _meter(meter_provider).create_observable_counter(name, [callback], unit=unit, description=description)


class LapMetrics:
    """Sink recording lap and sector durations; cost totals are kept exactly and observed."""

    __name__ = "metrics"

    def __init__(self, meter_provider: MeterProvider | None = None) -> None:
        meter = _meter(meter_provider)
        self._lap = meter.create_histogram(
            "chronograph.lap.duration", unit="ms", description="Lap time: root span duration")
        self._sector = meter.create_histogram(
            "chronograph.sector.duration", unit="ms", description="Time per sector (union of its spans)")
        self._lap_attrs: dict[tuple[str, str, str], dict[str, str]] = {}
        self._sector_attrs: dict[tuple[str, str], dict[str, str]] = {}
        self._cost: dict[tuple[str, str], Decimal] = {}
        self._lock = threading.Lock()
        observe_counter(meter_provider, "chronograph.cost", self._cost_points,
                        "Cost from the rate card, by command and tier", unit="1")

    def _cost_points(self) -> list[tuple[float, dict[str, Any]]]:
        with self._lock:
            items = list(self._cost.items())
        return [(float(v), {"chronograph.command": c, "chronograph.tier": t}) for (c, t), v in items]

    def __call__(self, lap: Lap) -> None:
        command = lap.command
        key = (command, lap.status, lap.tier)
        attrs = self._lap_attrs.get(key)
        if attrs is None:
            attrs = {"chronograph.command": command, "chronograph.status": lap.status,
                     "chronograph.tier": lap.tier}
            if len(self._lap_attrs) < _MAX_CACHED:
                self._lap_attrs[key] = attrs
        self._lap.record(lap.lap_ms, attrs, _EMPTY)
        sector_attrs = self._sector_attrs
        for name, ms in lap.sectors.items():
            skey = (command, name)
            sattrs = sector_attrs.get(skey)
            if sattrs is None:
                sattrs = {"chronograph.command": command, "chronograph.sector": name}
                if len(sector_attrs) < _MAX_CACHED:
                    sector_attrs[skey] = sattrs
            self._sector.record(ms, sattrs, _EMPTY)
        ckey = (command, lap.tier)
        with self._lock:
            self._cost[ckey] = self._cost.get(ckey, Decimal(0)) + lap.cost
