"""The lap metrics aggregated in the process, as the SDK's own aggregations would, without a
``Measurement`` object and an SDK call per point (``Histogram.record`` costs ~10 µs a point).

Every point lands in one *live* accumulator per attribute set (a dict lookup, a bisect and a few
additions). A reader's collection first *folds* the live values into every reader's own pending state
and clears them, then emits that reader's points in its temporality: delta (what was recorded since
its last collection) or cumulative (everything since the attribute set first appeared). That is what
the SDK computes with one storage per reader; with a single reader even the float additions happen in
the same order, so sums are bit-for-bit the SDK's (tests/core/test_metrics_aggregate.py compares).

Attribute sets are capped per instrument (``_cardinality.CappedSets``).
Nothing here touches SDK internals; only the public point types of ``opentelemetry.sdk.metrics.export``.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Collection, Hashable, Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from math import inf, isfinite
from time import time_ns
from typing import Any, TypeVar

from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    Histogram,
    HistogramDataPoint,
    Metric,
    NumberDataPoint,
    Sum,
)

from ._cardinality import DEFAULT_CARDINALITY_LIMIT, LapStreams

__all__ = ["Aggregates", "Instrument", "ReaderPlan"]

A = TypeVar("A", "_Hist", "_Total")


class _Hist:
    """Explicit-bucket histogram state: bucket counts, sum, min, max (the SDK's fields)."""

    __slots__ = ("counts", "max", "min", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = [0] * buckets
        self.sum: float = 0
        self.min = inf
        self.max = -inf

    def merge(self, other: _Hist) -> None:
        self.counts = [a + b for a, b in zip(other.counts, self.counts, strict=True)]
        self.sum = other.sum + self.sum  # the SDK's order: newer + older
        self.min = min(other.min, self.min)
        self.max = max(other.max, self.max)

    def empty(self) -> _Hist:
        return _Hist(len(self.counts))


class _HistEntry(_Hist):
    """The live accumulator of one attribute set."""

    __slots__ = ("attributes", "bounds", "start_ns")

    def __init__(self, attributes: dict[str, Any], bounds: tuple[float, ...]) -> None:
        super().__init__(len(bounds) + 1)
        self.attributes = attributes
        self.bounds = bounds
        self.start_ns = time_ns()

    def add(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1  # the SDK's bucket rule: (lower, upper]
        self.sum += value
        if value < self.min:
            self.min = value
        if value > self.max:
            self.max = value

    def take(self) -> _Hist | None:
        """The values since the last fold (None: nothing), leaving this entry empty."""
        if not any(self.counts):
            return None
        out = _Hist(0)
        out.counts, out.sum, out.min, out.max = self.counts, self.sum, self.min, self.max
        self.counts = [0] * len(self.counts)
        self.sum, self.min, self.max = 0, inf, -inf
        return out


class _Total:
    """A monotonic sum kept as an exact Decimal; ``adds`` tells a zero total from no data."""

    __slots__ = ("adds", "value")

    def __init__(self) -> None:
        self.value = Decimal(0)
        self.adds = 0

    def merge(self, other: _Total) -> None:
        self.value += other.value
        self.adds += other.adds

    def empty(self) -> _Total:
        return _Total()


class _TotalEntry(_Total):
    __slots__ = ("attributes", "start_ns")

    def __init__(self, attributes: dict[str, Any]) -> None:
        super().__init__()
        self.attributes = attributes
        self.start_ns = time_ns()

    def add(self, value: Decimal) -> None:
        self.value += value
        self.adds += 1

    def take(self) -> _Total | None:
        if not self.adds:
            return None
        out = _Total()
        out.value, out.adds = self.value, self.adds
        self.value, self.adds = Decimal(0), 0
        return out


@dataclass(frozen=True, slots=True)
class Instrument:
    """What an exported metric is called: taken from the SDK's own instrument objects."""

    name: str
    description: str
    unit: str


@dataclass(frozen=True, slots=True)
class ReaderPlan:
    """How one reader wants the streams: temporality per instrument kind (None: the reader's
    aggregation drops it) and whether histograms report min and max."""

    histogram: AggregationTemporality | None
    counter: AggregationTemporality | None
    record_min_max: bool = True


class _ReaderState:
    """Per reader: values folded since its last collection, cumulative totals, last collection time."""

    __slots__ = ("last_ns", "pending", "totals")

    def __init__(self, streams: int) -> None:
        self.pending: list[dict[Any, Any]] = [{} for _ in range(streams)]
        self.totals: list[dict[Any, Any]] = [{} for _ in range(streams)]
        self.last_ns = 0


def _fold(entries: Iterable[Any], pendings: list[dict[Any, Any]]) -> None:
    """Move each live entry's values into every reader's pending state."""
    for entry in entries:
        taken = entry.take()
        if taken is None:
            continue
        for pending in pendings:
            acc = pending.get(entry)
            if acc is None:
                acc = pending[entry] = taken.empty()
            acc.merge(taken)


def _window(pending: dict[Any, A], totals: dict[Any, A], temporality: AggregationTemporality,
            last_ns: int) -> Iterable[tuple[Any, A, int]]:
    """(entry, values, start time) to report: delta -> pending alone, cumulative -> running totals."""
    if temporality is AggregationTemporality.DELTA:
        return [(entry, acc, max(entry.start_ns, last_ns)) for entry, acc in pending.items()]
    for entry, acc in pending.items():
        total = totals.get(entry)
        if total is None:
            totals[entry] = acc
        else:
            total.merge(acc)
    return [(entry, acc, entry.start_ns) for entry, acc in totals.items()]


class Aggregates(LapStreams["_HistEntry", "_TotalEntry"]):
    """The lap, sector and cost streams of one MeterProvider, aggregated here, for every reader on it."""

    def __init__(self, lap: Instrument, sector: Instrument, cost: Instrument,
                 bounds: Sequence[float], limit: int = DEFAULT_CARDINALITY_LIMIT) -> None:
        self.instruments = (lap, sector, cost)
        self.bounds = tuple(bounds)
        bnds = self.bounds

        def histogram(attrs: dict[str, Any]) -> _HistEntry:
            return _HistEntry(attrs, bnds)

        super().__init__(limit, histogram, histogram, _TotalEntry)
        self._readers: dict[Hashable, _ReaderState] = {}

    def produce(self, reader: Hashable, plan: ReaderPlan, readers: Collection[Hashable]) -> list[Metric]:
        """The metrics for one reader's collection; ``readers`` are all readers on the provider now
        (values recorded since the last fold are owed to each of them)."""
        with self.lock:
            states = self._readers
            for gone in [r for r in states if r not in readers]:
                del states[gone]
            for r in readers:
                if r not in states:
                    states[r] = _ReaderState(3)
            if reader not in states:  # collecting, yet no longer registered: nothing is owed to it
                return []
            state_list = list(states.values())
            live: tuple[dict[Hashable, Any], ...] = (self.laps.entries, self.sectors.entries,
                                                     self.costs.entries)
            for index, entries in enumerate(live):
                _fold(list(entries.values()), [s.pending[index] for s in state_list])
            state = states[reader]
            now = time_ns()
            out: list[Metric] = []
            for index, temporality in enumerate((plan.histogram, plan.histogram, plan.counter)):
                pending = state.pending[index]
                state.pending[index] = {}
                if temporality is None:
                    continue
                window = _window(pending, state.totals[index], temporality, state.last_ns)
                metric = self._metric(index, window, temporality, now, plan.record_min_max)
                if metric is not None:
                    out.append(metric)
            state.last_ns = now
            return out

    def _metric(self, index: int, window: Iterable[tuple[Any, Any, int]],
                temporality: AggregationTemporality, now: int, min_max: bool) -> Metric | None:
        inst = self.instruments[index]
        data: Histogram | Sum
        if index < 2:
            points = [HistogramDataPoint(
                attributes=entry.attributes, start_time_unix_nano=start, time_unix_nano=now,
                count=sum(acc.counts), sum=acc.sum, bucket_counts=tuple(acc.counts),
                explicit_bounds=self.bounds, min=acc.min if min_max else inf,
                max=acc.max if min_max else -inf, exemplars=[])
                for entry, acc, start in window]
            if not points:
                return None
            data = Histogram(data_points=points, aggregation_temporality=temporality)
        else:
            nums = [NumberDataPoint(attributes=entry.attributes, start_time_unix_nano=start,
                                    time_unix_nano=now, value=_number(acc.value), exemplars=[])
                    for entry, acc, start in window]
            if not nums:
                return None
            data = Sum(data_points=nums, aggregation_temporality=temporality, is_monotonic=True)
        return Metric(name=inst.name, description=inst.description, unit=inst.unit, data=data)


def _number(value: Decimal) -> float:
    out = float(value)
    return out if isfinite(out) else 0.0
