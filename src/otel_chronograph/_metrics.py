"""Metrics: SPEC.md's instruments through the OpenTelemetry metrics API (meter ``otel_chronograph``).

The lap instruments (:class:`LapMetrics`) are aggregated in the process on the SDK and handed to the
readers at collection (``_aggregate``, ``_sdk_collect``); the plugin's health counters are kept in plain
integers and reported by observable instruments (:func:`observe_counter`, :func:`observe_gauge`). Neither
costs an SDK call per lap. How and why: docs/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.context import Context
from opentelemetry.metrics import CallbackOptions, MeterProvider, Observation

from ._cardinality import DEFAULT_CARDINALITY_LIMIT, LapStreams
from ._lap import Lap

__all__ = ["METER_NAME", "LapMetrics", "observe_counter", "observe_gauge"]

METER_NAME = "otel_chronograph"
_EMPTY = Context()  # no exemplar sampling or context lookup per point: these are derived values


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


class _PointRecorder:
    """Fallback entry: one ``record``/``add`` call per point, on an attribute dict made once."""

    __slots__ = ("attributes", "call", "convert")

    def __init__(self, call: Callable[..., None], attributes: dict[str, Any],
                 convert: Callable[[Any], float] = float) -> None:
        self.call = call
        self.attributes = attributes
        self.convert = convert

    def add(self, value: Any) -> None:
        self.call(self.convert(value), self.attributes, _EMPTY)


class LapMetrics:
    """Sink for SPEC.md's lap instruments: ``chronograph.lap.duration``, ``chronograph.sector.duration``
    (histograms, ms) and ``chronograph.cost`` (counter).

    On the OpenTelemetry SDK the points are aggregated in the process and handed to every reader at
    collection (``_aggregate``, hooked in by ``_sdk_collect``): no SDK call per point. Otherwise (another
    MeterProvider, a View matching these instruments, non-bucket histogram aggregation, an SDK of unknown
    shape) each point goes through ``Histogram.record``/``Counter.add``. Either way attribute sets are
    capped per instrument (``cardinality_limit``) with the overflow set, and overflowed points are
    counted in ``chronograph.metrics.overflow``. Every LapMetrics on one SDK MeterProvider shares one
    aggregation (as they would share the SDK's instruments); the first one's limit applies.
    """

    __name__ = "metrics"

    def __init__(self, meter_provider: MeterProvider | None = None,
                 cardinality_limit: int = DEFAULT_CARDINALITY_LIMIT) -> None:
        meter = _meter(meter_provider)
        lap = meter.create_histogram(
            "chronograph.lap.duration", unit="ms", description="Lap time: root span duration")
        sector = meter.create_histogram(
            "chronograph.sector.duration", unit="ms", description="Time per sector (union of its spans)")
        cost = meter.create_counter(
            "chronograph.cost", unit="1", description="Cost from the rate card, by command and tier")
        streams = _aggregated(meter, lap, sector, cost, cardinality_limit)
        self.aggregated = streams is not None
        # Aggregated, a lap costs a few µs here: less than handing it to the background thread, which
        # keeps every queued lap (and its spans) alive long enough to cost garbage-collector passes.
        # Through ``Histogram.record`` (about 10 µs a point) it stays off the lap's path.
        self.deferred = not self.aggregated
        if streams is None:
            streams = LapStreams(cardinality_limit, lambda a: _PointRecorder(lap.record, a),
                                 lambda a: _PointRecorder(sector.record, a),
                                 lambda a: _PointRecorder(cost.add, a))
        self.streams: LapStreams[Any, Any] = streams
        self.record = streams.record
        if not streams.reported:
            streams.reported = True
            observe_counter(
                meter_provider, "chronograph.metrics.overflow",
                lambda: [(n, {"chronograph.instrument": name}) for name, n in streams.overflowed()],
                "Points recorded in the overflow attribute set (otel.metric.overflow) because an "
                "instrument reached its cardinality limit", unit="{point}")

    def __call__(self, lap: Lap) -> None:
        self.record(lap)


def _aggregated(meter: metrics.Meter, lap: Any, sector: Any, cost: Any, limit: int
                ) -> LapStreams[Any, Any] | None:
    """The provider's shared in-process aggregation, or None when points must go through the SDK."""
    from ._sdk_collect import attach

    def make(bounds: tuple[float, ...]) -> tuple[Any, object]:
        from ._aggregate import Aggregates, Instrument

        lap_i, sector_i, cost_i = (Instrument(i.name, i.description, i.unit) for i in (lap, sector, cost))
        agg = Aggregates(lap_i, sector_i, cost_i, bounds=bounds, limit=limit)
        return agg.produce, agg

    owner = attach(meter, (lap, sector), cost, make)
    return owner if isinstance(owner, LapStreams) else None
