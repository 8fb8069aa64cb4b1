"""The one module that reaches into the OpenTelemetry SDK's private metrics internals, and why.

Pre-aggregated points (see ``_aggregate``) need a way into every reader's collection. The spec's way is a
``MetricProducer`` registered on the readers; the Python SDK has none yet (open upstream work adds it
inside ``SynchronousMeasurementConsumer.collect``, merging the producers' output into the reader's
``MetricsData``). Until it lands, this wraps that same method of one MeterProvider's consumer: every
reader registered on the provider, now or later through ``add_metric_reader`` (which hands readers
``consumer.collect``), collects through :class:`CollectHook`, which appends chronograph's points to the
SDK's own under the meter's scope, in that reader's temporality.

Private names used: ``Meter._measurement_consumer`` / ``._instrumentation_scope``, the consumer's
``collect``, ``_reader_storages`` and ``_sdk_config`` (``views``, ``resource``),
``MetricReader._set_collect_callback`` / ``._instrument_class_temporality`` /
``._instrument_class_aggregation``, ``View._match``, ``ExplicitBucketHistogramAggregation._boundaries``
/ ``._record_min_max``, the instruments' ``_is_enabled``. :func:`attach` returns None when any of it is
missing or shaped differently, when a user View matches one of our instruments (the View decides the
output: only the SDK applies it), when the readers want another histogram aggregation than explicit
buckets, or for a non-SDK MeterProvider: the caller then records through ``Histogram.record``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.metrics import Instrument as APIInstrument

from ._aggregate import ReaderPlan

__all__ = ["CollectHook", "Producer", "attach"]

_log = logging.getLogger("otel_chronograph")

# Known shape of the internals: SDK 1.x (written against 1.45; a 2.x is "unknown": per-point path).
_SDK_MAJOR = 1

# (reader, plan, every reader on the provider now) -> the metrics to add for that reader.
Producer = Callable[[Any, ReaderPlan, Sequence[Any]], list[Any]]


def _sdk_version_known() -> bool:
    try:
        from opentelemetry.sdk.version import __version__
    except ImportError:  # pragma: no cover - every SDK release has it
        return False
    try:
        return int(__version__.split(".")[0]) == _SDK_MAJOR
    except ValueError:
        return False


class CollectHook:
    """Stands in for the consumer's ``collect``: the SDK's data for the reader, plus ours."""

    def __init__(self, consumer: Any, original: Callable[..., Any], scope: Any,
                 instruments: tuple[Any, Any], bounds: tuple[float, ...], producer: Producer,
                 owner: object) -> None:
        self._consumer = consumer
        self._original = original
        self._scope = scope
        self._histogram, self._counter = instruments
        self.bounds = bounds
        self.producer = producer
        self.owner = owner  # what the producer belongs to (shared by every LapMetrics on the provider)
        self._warned: set[int] = set()

    def collect(self, metric_reader: Any, timeout_millis: float = 10_000) -> Any:
        data = self._original(metric_reader, timeout_millis=timeout_millis)
        try:
            metrics = self._produce(metric_reader)
        except Exception:  # a bug here must not cost the reader the SDK's own metrics
            if id(self) not in self._warned:
                self._warned.add(id(self))
                _log.warning("chronograph: lap metrics could not be collected", exc_info=True)
            return data
        return _merge(data, self._scope, metrics, self._consumer._sdk_config.resource) if metrics else data

    def _produce(self, reader: Any) -> list[Any]:
        if not self._histogram._is_enabled():  # a MeterConfigurator disabled the meter
            return []
        plan = reader_plan(reader, self._histogram, self._counter, self.bounds)
        if plan is None:
            if id(reader) not in self._warned:
                self._warned.add(id(reader))
                _log.warning("chronograph: metric reader %r was added with a histogram aggregation other "
                             "than the explicit buckets %s; chronograph's lap metrics are not sent to it",
                             reader, self.bounds)
            return []
        return self.producer(reader, plan, list(self._consumer._reader_storages))


def _merge(data: Any, scope: Any, metrics: list[Any], resource: Any) -> Any:
    """The reader's MetricsData with ``metrics`` under ``scope`` (joining the scope's other metrics,
    e.g. chronograph's observable health counters, as the SDK groups them)."""
    from opentelemetry.sdk.metrics.export import MetricsData, ResourceMetrics, ScopeMetrics

    if data is None or not data.resource_metrics:
        return MetricsData(resource_metrics=[ResourceMetrics(
            resource=resource, scope_metrics=[ScopeMetrics(scope=scope, metrics=metrics,
                                                           schema_url=scope.schema_url)],
            schema_url=resource.schema_url)])
    first = data.resource_metrics[0]
    scopes = list(first.scope_metrics)
    for i, sm in enumerate(scopes):
        if sm.scope == scope:
            scopes[i] = ScopeMetrics(scope=sm.scope, metrics=[*sm.metrics, *metrics],
                                     schema_url=sm.schema_url)
            break
    else:
        scopes.append(ScopeMetrics(scope=scope, metrics=metrics, schema_url=scope.schema_url))
    merged = ResourceMetrics(resource=first.resource, scope_metrics=scopes, schema_url=first.schema_url)
    return MetricsData(resource_metrics=[merged, *data.resource_metrics[1:]])


def _histogram_aggregation(reader: Any, histogram: Any) -> tuple[str, tuple[float, ...], bool]:
    """("drop" | "buckets" | "other", boundaries, record_min_max) that this reader applies by default
    to our histogram."""
    from opentelemetry.sdk.metrics.view import (
        DefaultAggregation,
        DropAggregation,
        ExplicitBucketHistogramAggregation,
    )

    aggregation = reader._instrument_class_aggregation[type(histogram)]
    default = _default_bounds()
    if isinstance(aggregation, DropAggregation):
        return "drop", (), True
    if type(aggregation) is DefaultAggregation:
        return "buckets", default, True
    if type(aggregation) is ExplicitBucketHistogramAggregation:
        bounds = aggregation._boundaries
        return "buckets", tuple(bounds) if bounds is not None else default, bool(aggregation._record_min_max)
    return "other", (), True


def reader_plan(reader: Any, histogram: Any, counter: Any, bounds: tuple[float, ...]) -> ReaderPlan | None:
    """This reader's temporalities for our instruments, or None when its aggregation is not the
    explicit buckets ``bounds`` (histograms) or a sum (the counter)."""
    from opentelemetry.sdk.metrics.view import DefaultAggregation, DropAggregation, SumAggregation

    kind, reader_bounds, min_max = _histogram_aggregation(reader, histogram)
    if kind == "other" or (kind == "buckets" and reader_bounds != bounds):
        return None
    counter_aggregation = reader._instrument_class_aggregation[type(counter)]
    if not isinstance(counter_aggregation, (DefaultAggregation, DropAggregation, SumAggregation)):
        return None
    temporality = reader._instrument_class_temporality
    return ReaderPlan(
        histogram=None if kind == "drop" else temporality[type(histogram)],
        counter=None if isinstance(counter_aggregation, DropAggregation) else temporality[type(counter)],
        record_min_max=min_max)


def attach(meter: Any, histograms: Sequence[APIInstrument], counter: APIInstrument,
           make: Callable[[tuple[float, ...]], tuple[Producer, object]]) -> object | None:
    """Deliver pre-aggregated points for ``histograms`` and ``counter`` (instruments made on ``meter``)
    to every reader of ``meter``'s provider. ``make(bounds)`` builds (producer, owner) once per provider;
    a second call for the same provider returns the first owner. None: record through the SDK instead."""
    try:
        return _attach(meter, histograms, counter, make)
    except (AttributeError, KeyError, TypeError, ImportError):  # internals of another shape
        _log.debug("chronograph: SDK metrics internals not as expected; recording per point", exc_info=True)
        return None


def _attach(meter: Any, histograms: Sequence[APIInstrument], counter: APIInstrument,
            make: Callable[[tuple[float, ...]], tuple[Producer, object]]) -> object | None:
    from opentelemetry.sdk.metrics import Meter as SDKMeter
    from opentelemetry.sdk.metrics._internal.measurement_consumer import SynchronousMeasurementConsumer

    if not isinstance(meter, SDKMeter) or not _sdk_version_known():
        return None
    consumer = meter._measurement_consumer
    if not isinstance(consumer, SynchronousMeasurementConsumer):
        return None
    storages = consumer._reader_storages
    config = consumer._sdk_config
    if not isinstance(storages, Mapping) or not hasattr(config, "resource"):
        return None
    instruments: list[Any] = [*histograms, counter]
    if any(view._match(inst) for view in config.views for inst in instruments):
        return None
    current = getattr(consumer.collect, "__self__", None)
    if isinstance(current, CollectHook):
        return current.owner
    histogram = histograms[0]
    bounds: tuple[float, ...] | None = None
    for reader in storages:
        kind, reader_bounds, _ = _histogram_aggregation(reader, histogram)
        if kind == "other" or (kind == "buckets" and bounds is not None and reader_bounds != bounds):
            return None  # exponential histograms, or readers that disagree on buckets
        if kind == "buckets":
            bounds = reader_bounds
    if bounds is None:  # no reader yet, or all drop histograms: the default buckets
        bounds = _default_bounds()
    for reader in storages:
        if reader_plan(reader, histogram, counter, bounds) is None:
            return None
    producer, owner = make(bounds)
    hook = CollectHook(consumer, consumer.collect, meter._instrumentation_scope, (histogram, counter),
                       bounds, producer, owner)
    consumer.collect = hook.collect  # type: ignore[method-assign] # add_metric_reader hands it out
    for reader in storages:
        reader._set_collect_callback(hook.collect)
    return owner


def _default_bounds() -> tuple[float, ...]:
    from opentelemetry.sdk.metrics._internal.aggregation import (
        _DEFAULT_EXPLICIT_BUCKET_HISTOGRAM_AGGREGATION_BOUNDARIES,
    )

    return tuple(_DEFAULT_EXPLICIT_BUCKET_HISTOGRAM_AGGREGATION_BOUNDARIES)
