"""In-process aggregation of the lap metrics against the OpenTelemetry SDK itself.

The same laps go through ``LapMetrics`` (aggregated here, handed to the readers at collection) and
through a plain SDK ``Histogram.record`` / ``Counter.add`` on a second MeterProvider; the exported data
points must be the same, per reader temporality, collection after collection.
"""

from __future__ import annotations

import logging
import math
import os
import random
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterable, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.context import Context
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.sdk.metrics import Counter, Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import (
    AggregationTemporality,
    HistogramDataPoint,
    InMemoryMetricReader,
    MetricsData,
    NumberDataPoint,
)
from opentelemetry.sdk.metrics.view import (
    ExplicitBucketHistogramAggregation,
    ExponentialBucketHistogramAggregation,
    View,
)

from otel_chronograph import _aggregate
from otel_chronograph._lap import Lap, Status
from otel_chronograph._metrics import METER_NAME, LapMetrics
from otel_chronograph._version import __version__
from tests.otlp_receiver import OTLPReceiver

CUMULATIVE, DELTA = AggregationTemporality.CUMULATIVE, AggregationTemporality.DELTA
OURS = ("chronograph.lap.duration", "chronograph.sector.duration", "chronograph.cost")
DEFAULT_BOUNDS = (0.0, 5.0, 10.0, 25.0, 50.0, 75.0, 100.0, 250.0, 500.0, 750.0, 1000.0, 2500.0, 5000.0,
                  7500.0, 10000.0)


def make_lap(command: str, status: Status = "GREEN", tier: str = "pro", lap_ms: float = 10.0,
             sectors: dict[str, float] | None = None, cost: Decimal = Decimal("0.001")) -> Lap:
    return Lap(request_id="req_0", trace_id="0" * 32, span_id="0" * 16, command=command, timestamp=0,
               start_ns=0, end_ns=0, lap_ms=lap_ms, other_ms=0.0, sectors=dict(sectors or {}),
               critical_path={}, critical_other_ms=0.0, status=status, error=False,
               tier=tier, customer=None, score=None, cost=cost)


def reader(temporality: AggregationTemporality, **kwargs: Any) -> InMemoryMetricReader:
    return InMemoryMetricReader(preferred_temporality={Histogram: temporality, Counter: temporality},
                                **kwargs)


class Reference:
    """The same instruments recorded point by point through the SDK (what chronograph did before)."""

    def __init__(self, readers: Sequence[InMemoryMetricReader], views: Sequence[View] = ()) -> None:
        self.mp = MeterProvider(metric_readers=readers, views=views, shutdown_on_exit=False)
        meter = self.mp.get_meter(METER_NAME, __version__)
        self.lap = meter.create_histogram("chronograph.lap.duration", unit="ms",
                                          description="Lap time: root span duration")
        self.sector = meter.create_histogram("chronograph.sector.duration", unit="ms",
                                             description="Time per sector (union of its spans)")
        self.cost = meter.create_counter("chronograph.cost", unit="1",
                                         description="Cost from the rate card, by command and tier")

    def __call__(self, lap: Lap) -> None:
        empty = Context()
        self.lap.record(lap.lap_ms, {"chronograph.command": lap.command, "chronograph.status": lap.status,
                                     "chronograph.tier": lap.tier}, empty)
        for name, ms in lap.sectors.items():
            self.sector.record(ms, {"chronograph.command": lap.command, "chronograph.sector": name}, empty)
        self.cost.add(float(lap.cost), {"chronograph.command": lap.command, "chronograph.tier": lap.tier},
                      empty)


def exported(data: MetricsData | None) -> dict[str, dict[str, Any]]:
    """Our three instruments as exported: name -> metric fields and points by attribute set."""
    out: dict[str, dict[str, Any]] = {}
    if data is None:
        return out
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name not in OURS:
                    continue
                assert m.name not in out, f"{m.name} exported twice"
                out[m.name] = {
                    "scope": (sm.scope.name, sm.scope.version, sm.scope.schema_url, sm.schema_url),
                    "unit": m.unit, "description": m.description, "type": type(m.data).__name__,
                    "temporality": m.data.aggregation_temporality,  # type: ignore[union-attr]
                    "monotonic": getattr(m.data, "is_monotonic", None),
                    "points": {frozenset(p.attributes.items()): p  # type: ignore[union-attr]
                               for p in m.data.data_points},
                }
    return out


def same_points(ours: dict[str, dict[str, Any]], ref: dict[str, dict[str, Any]], exact_sums: bool) -> None:
    assert set(ours) == set(ref)
    for name, mine in ours.items():
        theirs = ref[name]
        for field in ("scope", "unit", "description", "type", "temporality", "monotonic"):
            assert mine[field] == theirs[field], (name, field)
        assert set(mine["points"]) == set(theirs["points"]), name
        for attrs, p in mine["points"].items():
            q = theirs["points"][attrs]
            assert p.exemplars == q.exemplars == []
            assert p.start_time_unix_nano <= p.time_unix_nano
            if isinstance(p, HistogramDataPoint):
                fields = (p.count, tuple(p.bucket_counts), tuple(p.explicit_bounds), p.min, p.max)
                assert fields == (q.count, tuple(q.bucket_counts), tuple(q.explicit_bounds), q.min, q.max)
                if exact_sums:
                    assert p.sum == q.sum, (name, attrs)
                else:
                    assert math.isclose(p.sum, q.sum, rel_tol=1e-12, abs_tol=1e-9), (name, attrs)
            else:
                assert isinstance(p, NumberDataPoint)
                # Cost is summed as an exact Decimal here, the reference adds floats: equal up to rounding.
                assert math.isclose(p.value, q.value, rel_tol=1e-9, abs_tol=1e-12), (attrs, p.value, q.value)


def check_times(history: list[dict[str, dict[str, Any]]], temporality: AggregationTemporality) -> None:
    """Delta windows follow one another (start = previous collection or the set's first point);
    cumulative points keep one start time per attribute set."""
    starts: dict[tuple[str, frozenset[Any]], int] = {}
    last_time = 0
    for collection in history:
        times = {p.time_unix_nano for m in collection.values() for p in m["points"].values()}
        assert len(times) <= 1, "one collection time per reader collection"
        for name, m in collection.items():
            for attrs, p in m["points"].items():
                if temporality is CUMULATIVE:
                    assert starts.setdefault((name, attrs), p.start_time_unix_nano) == p.start_time_unix_nano
                else:
                    assert p.start_time_unix_nano >= last_time
        last_time = max(times, default=last_time)


durations = st.one_of(st.sampled_from((*DEFAULT_BOUNDS, 0.0, 1e-9, 7.5, 10000.5)),
                      st.floats(min_value=0, max_value=20_000, allow_nan=False, allow_infinity=False))
laps = st.builds(
    make_lap,
    command=st.sampled_from(["faf score", "faf load", "GET /items/{id}", "ünïcode ✓"]),
    status=st.sampled_from(["GREEN", "YELLOW", "RED"]),
    tier=st.sampled_from(["free", "pro", "enterprise"]),
    lap_ms=durations,
    sectors=st.dictionaries(st.sampled_from(["init", "load", "exec", "format"]), durations, max_size=4),
    cost=st.decimals(min_value=0, max_value=10, places=4, allow_nan=False, allow_infinity=False),
)
batches = st.lists(st.lists(laps, max_size=12), min_size=1, max_size=4)


History = list[list[dict[str, Any]]]  # per reader: one exported() per collection


def run_both(temporalities: Sequence[AggregationTemporality], batches: Iterable[list[Lap]],
             **reader_kwargs: Any) -> tuple[History, History, LapMetrics]:
    ours_readers = [reader(t, **reader_kwargs) for t in temporalities]
    ref_readers = [reader(t, **reader_kwargs) for t in temporalities]
    mp = MeterProvider(metric_readers=ours_readers, shutdown_on_exit=False)
    sink = LapMetrics(mp)
    ref = Reference(ref_readers)
    ours_hist: History = [[] for _ in temporalities]
    ref_hist: History = [[] for _ in temporalities]
    for batch in batches:
        for lap in batch:
            sink(lap)
            ref(lap)
        for i, (a, b) in enumerate(zip(ours_readers, ref_readers, strict=True)):
            ours_hist[i].append(exported(a.get_metrics_data()))
            ref_hist[i].append(exported(b.get_metrics_data()))
    mp.shutdown()
    ref.mp.shutdown()
    return ours_hist, ref_hist, sink


@pytest.mark.parametrize("temporality", [CUMULATIVE, DELTA], ids=["cumulative", "delta"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=batches)
def test_same_points_as_the_sdk(temporality: AggregationTemporality, batches: list[list[Lap]]) -> None:
    ours, ref, sink = run_both([temporality], batches)
    assert sink.aggregated
    for mine, theirs in zip(ours[0], ref[0], strict=True):
        same_points(mine, theirs, exact_sums=True)  # one reader: the same float additions in the same order
    check_times(ours[0], temporality)
    check_times(ref[0], temporality)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=batches)
def test_two_readers_with_different_temporalities(batches: list[list[Lap]]) -> None:
    ours, ref, sink = run_both([CUMULATIVE, DELTA], batches)
    assert sink.aggregated
    for i, temporality in enumerate([CUMULATIVE, DELTA]):
        for mine, theirs in zip(ours[i], ref[i], strict=True):
            # Another reader's collection can split a window: sums may differ in the last bit.
            same_points(mine, theirs, exact_sums=False)
        check_times(ours[i], temporality)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches=batches)
def test_reader_bucket_boundaries_and_min_max_setting_are_followed(batches: list[list[Lap]]) -> None:
    agg = {Histogram: ExplicitBucketHistogramAggregation(boundaries=(1.0, 10.0, 100.0), record_min_max=False)}
    ours, ref, sink = run_both([DELTA], batches, preferred_aggregation=agg)
    assert sink.aggregated
    for mine, theirs in zip(ours[0], ref[0], strict=True):
        same_points(mine, theirs, exact_sums=True)
        for p in mine.get("chronograph.lap.duration", {"points": {}})["points"].values():
            assert tuple(p.explicit_bounds) == (1.0, 10.0, 100.0) and (p.min, p.max) == (math.inf, -math.inf)


def test_views_on_our_instruments_fall_back_to_the_sdk() -> None:
    """A View decides names, buckets, attribute keys: only the SDK applies it, so points go through it."""
    views = [View(instrument_name="chronograph.lap.duration",
                  aggregation=ExplicitBucketHistogramAggregation((1.0, 2.0)),
                  attribute_keys={"chronograph.command"})]
    ours = InMemoryMetricReader()
    sink = LapMetrics(MeterProvider(metric_readers=[ours], views=views, shutdown_on_exit=False))
    assert not sink.aggregated
    for ms in (0.5, 1.5, 3.0):
        sink(make_lap("c", lap_ms=ms, sectors={"s": ms}))
    got = exported(ours.get_metrics_data())
    (point,) = got["chronograph.lap.duration"]["points"].values()
    assert point.attributes == {"chronograph.command": "c"}
    assert tuple(point.bucket_counts) == (1, 1, 1) and tuple(point.explicit_bounds) == (1.0, 2.0)
    assert [p.count for p in got["chronograph.sector.duration"]["points"].values()] == [3]
    assert [p.value for p in got["chronograph.cost"]["points"].values()] == [pytest.approx(0.003)]


def test_exponential_histogram_reader_falls_back_to_the_sdk() -> None:
    ours = InMemoryMetricReader(preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()})
    sink = LapMetrics(MeterProvider(metric_readers=[ours], shutdown_on_exit=False))
    assert not sink.aggregated
    sink(make_lap("c", lap_ms=12.0))
    assert exported(ours.get_metrics_data())["chronograph.lap.duration"]["type"] == "ExponentialHistogram"


def test_non_sdk_meter_provider_records_per_point_without_error() -> None:
    sink = LapMetrics(NoOpMeterProvider())
    assert not sink.aggregated
    sink(make_lap("c", sectors={"a": 1.0}))


def test_reader_added_later_gets_the_points_recorded_after_it_joined() -> None:
    first = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[first], shutdown_on_exit=False)
    sink = LapMetrics(mp)
    sink(make_lap("c"))
    assert exported(first.get_metrics_data())["chronograph.lap.duration"]["points"]
    late = InMemoryMetricReader()
    mp.add_metric_reader(late)
    for _ in range(3):
        sink(make_lap("c"))
    (point,) = exported(late.get_metrics_data())["chronograph.lap.duration"]["points"].values()
    assert point.count == 3
    (point,) = exported(first.get_metrics_data())["chronograph.lap.duration"]["points"].values()
    assert point.count == 4


def test_late_reader_with_other_histogram_aggregation_gets_no_lap_metrics_and_a_warning(
        caplog: pytest.LogCaptureFixture) -> None:
    first = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[first], shutdown_on_exit=False)
    sink = LapMetrics(mp)
    late = InMemoryMetricReader(preferred_aggregation={Histogram: ExponentialBucketHistogramAggregation()})
    mp.add_metric_reader(late)
    sink(make_lap("c"))
    with caplog.at_level(logging.WARNING, logger="otel_chronograph"):
        assert "chronograph.lap.duration" not in exported(late.get_metrics_data())
    assert "explicit buckets" in caplog.text
    (point,) = exported(first.get_metrics_data())["chronograph.lap.duration"]["points"].values()
    assert point.count == 1


def test_one_scope_with_the_health_counters_and_one_aggregation_per_provider() -> None:
    ours = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[ours], shutdown_on_exit=False)
    a, b = LapMetrics(mp), LapMetrics(mp)  # e.g. two processors on one provider: the SDK shares instruments
    assert a.streams is b.streams
    a(make_lap("c"))
    b(make_lap("c"))
    data = ours.get_metrics_data()
    assert data is not None
    scopes = [sm for rm in data.resource_metrics for sm in rm.scope_metrics]
    assert [(s.scope.name, s.scope.version) for s in scopes] == [(METER_NAME, __version__)]
    names = [m.name for m in scopes[0].metrics]
    assert "chronograph.metrics.overflow" in names and len(names) == len(set(names))
    (point,) = exported(data)["chronograph.lap.duration"]["points"].values()
    assert point.count == 2


def test_a_failing_aggregation_does_not_cost_the_reader_the_sdk_metrics(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    ours = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[ours], shutdown_on_exit=False)
    sink = LapMetrics(mp)
    sink(make_lap("c"))

    def broken(*_: Any) -> list[Any]:
        raise RuntimeError("boom")

    monkeypatch.setattr(_aggregate, "_window", broken)
    with caplog.at_level(logging.WARNING, logger="otel_chronograph"):
        data = ours.get_metrics_data()
    assert data is not None
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "chronograph.metrics.overflow" in names and "chronograph.lap.duration" not in names
    assert "could not be collected" in caplog.text


# -- cardinality ---------------------------------------------------------------------------------


@pytest.mark.parametrize("views", [(), (View(instrument_name="chronograph.*"),)], ids=["aggregated", "sdk"])
def test_cardinality_cap_and_overflow_set(views: tuple[View, ...]) -> None:
    ours = InMemoryMetricReader()
    sink = LapMetrics(MeterProvider(metric_readers=[ours], views=views, shutdown_on_exit=False),
                      cardinality_limit=3)
    assert sink.aggregated is (not views)
    for i in range(10):
        sink(make_lap(f"cmd{i}", lap_ms=float(i), sectors={"s": 1.0}, cost=Decimal("0.5")))
    data = ours.get_metrics_data()
    got = exported(data)
    for name in OURS:
        points = got[name]["points"]
        assert len(points) == 4, name  # 3 real sets + the overflow set
        overflow = points[frozenset({("otel.metric.overflow", True)})]
        if name == "chronograph.cost":
            assert overflow.value == pytest.approx(3.5) and sum(p.value for p in points.values()) == 5.0
        else:
            assert overflow.count == 7 and sum(p.count for p in points.values()) == 10
    lap_overflow = exported(data)["chronograph.lap.duration"]["points"][
        frozenset({("otel.metric.overflow", True)})]
    assert (lap_overflow.min, lap_overflow.max) == (3.0, 9.0)
    assert data is not None
    counted = {p.attributes["chronograph.instrument"]: p.value  # type: ignore[index,union-attr]
               for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
               if m.name == "chronograph.metrics.overflow" for p in m.data.data_points}
    assert counted == {name: 7 for name in OURS}


def test_limit_distinct_sets_never_overflow() -> None:
    ours = InMemoryMetricReader()
    sink = LapMetrics(MeterProvider(metric_readers=[ours], shutdown_on_exit=False), cardinality_limit=5)
    for i in range(5):
        sink(make_lap(f"cmd{i}"))
    points = exported(ours.get_metrics_data())["chronograph.lap.duration"]["points"]
    assert len(points) == 5 and not any(("otel.metric.overflow", True) in attrs for attrs in points)


@pytest.mark.parametrize("views", [(), (View(instrument_name="chronograph.*"),)], ids=["aggregated", "sdk"])
def test_fifty_thousand_distinct_commands_stay_bounded(views: tuple[View, ...]) -> None:
    """Issue 9 item 8: 50,000 distinct commands grew memory by 322 MiB. Now the entries stop at the
    limit, and memory after 50,000 commands is what it was after the first 5,000."""
    ours = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[ours], views=views, shutdown_on_exit=False)
    sink = LapMetrics(mp)
    sectors = {"init": 1.0, "load": 2.0}
    n = 50_000 if not views else 12_000  # the per-point path is ~20x slower
    sizes: list[int] = []
    tracemalloc.start()
    try:
        for i in range(n):
            sink(make_lap(f"command {i}", sectors=sectors))
            if i % (n // 10) == n // 10 - 1:
                ours.get_metrics_data()  # collections in between, like a periodic reader
                sizes.append(tracemalloc.get_traced_memory()[0])
    finally:
        tracemalloc.stop()
    got = exported(ours.get_metrics_data())
    for name in OURS:
        assert len(got[name]["points"]) == 2001, name  # the limit plus the overflow set
    assert sum(p.count for p in got["chronograph.lap.duration"]["points"].values()) == n
    assert sum(p.count for p in got["chronograph.sector.duration"]["points"].values()) == 2 * n
    assert sink.streams.laps.overflowed == n - 2000
    assert len(sink.streams.sectors.entries) == 2001 and len(sink.streams.costs.entries) == 2001
    growth = sizes[-1] - sizes[1]  # from the second tenth (past the limit) to the end
    assert growth < 512 * 1024, f"memory grew {growth / 2**20:.1f} MiB past the cardinality limit"
    mp.shutdown()


# -- under opentelemetry-instrument, exported over OTLP/HTTP ------------------------------------------


APP = Path(__file__).with_name("metrics_app.py")
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("temporality", ["cumulative", "delta"])
def test_points_arrive_over_otlp_under_auto_instrumentation(tmp_path: Path, temporality: str) -> None:
    laps = 60
    cfg = tmp_path / "chronograph.yaml"
    cfg.write_text("chronograph:\n  display: {split_times: false}\n  recorder: {enabled: false}\n"
                   "  billing: {enabled: false, rates: {'faf score': '0.001'}}\n")
    with OTLPReceiver() as rx:
        env = {**os.environ, "OTEL_PYTHON_DISTRO": "chronograph", "OTEL_PYTHON_CONFIGURATOR": "chronograph",
               "CHRONOGRAPH_CONFIG": str(cfg), "OTEL_SERVICE_NAME": "metrics-app",
               "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
               "OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE": temporality,
               "OTEL_METRIC_EXPORT_INTERVAL": "200", "OTEL_LOGS_EXPORTER": "none",
               "PYTHONPATH": os.pathsep.join(filter(None, [str(APP.parents[2] / "src"),
                                                           os.environ.get("PYTHONPATH")]))}
        done = subprocess.run(
            [str(BIN / "opentelemetry-instrument"), "--traces_exporter", "otlp", "--metrics_exporter", "otlp",
             sys.executable, str(APP), str(laps)],
            env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        # One LapMetrics, aggregating in the process (not the per-point fallback).
        assert done.stdout.splitlines() == ["aggregated True"], done.stdout + done.stderr
        # run() returned: the exit-time export has arrived (the exporter waits for the reply).
    want_temporality = f"AGGREGATION_TEMPORALITY_{temporality.upper()}"

    def totals(name: str, description: str) -> dict[tuple[str, ...], int]:
        counts: dict[tuple[str, ...], list[int]] = {}
        for metric in rx.metric(name):
            assert metric["unit"] == "ms" and metric["description"] == description
            assert metric["scope"]["name"] == METER_NAME and metric["scope"]["version"] == __version__
            assert metric["histogram"]["aggregationTemporality"] == want_temporality
            for p in metric["histogram"]["dataPoints"]:
                assert sum(int(c) for c in p["bucketCounts"]) == int(p["count"])
                assert p["explicitBounds"] == list(DEFAULT_BOUNDS)
                key = tuple(a["value"]["stringValue"] for a in p["attributes"]
                            if a["key"] in ("chronograph.command", "chronograph.sector"))
                counts.setdefault(key, []).append(int(p["count"]))
        # Cumulative: the last export holds every lap; delta: the exports add up to every lap.
        return {k: (max(v) if temporality == "cumulative" else sum(v)) for k, v in counts.items()}

    assert totals("chronograph.lap.duration", "Lap time: root span duration") == {
        ("faf score",): 40, ("faf load",): 20}
    assert totals("chronograph.sector.duration", "Time per sector (union of its spans)") == {
        ("faf score", "init"): 40, ("faf score", "load"): 40,
        ("faf load", "init"): 20, ("faf load", "load"): 20}


def test_prometheus_reader_scrapes_what_the_sdk_would_expose() -> None:
    """A pull reader (Prometheus text format) through the same hook: the exposition of our three
    instruments is line for line the one the SDK gives for the same laps."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry, generate_latest

    rng = random.Random(7)
    texts = []
    for aggregated in (True, False):
        registry = CollectorRegistry()
        prom = PrometheusMetricReader(registry=registry)
        record: Any
        if aggregated:
            sink = LapMetrics(MeterProvider(metric_readers=[prom], shutdown_on_exit=False))
            assert sink.aggregated
            record = sink
        else:
            record = Reference([prom])
        rng.seed(7)
        for _ in range(300):
            record(make_lap(rng.choice(["faf score", "faf load"]), rng.choice(["GREEN", "RED"]),
                            rng.choice(["pro", "free"]), lap_ms=rng.choice([0.0, 5.0, rng.uniform(0, 12000)]),
                            sectors={s: rng.uniform(0, 800) for s in rng.sample(["a", "b", "c"], 2)},
                            cost=Decimal(rng.choice(["0", "0.25", "0.5", "2"]))))  # exact in binary
        ours_prefixes = ("chronograph_lap", "chronograph_sector", "chronograph_cost")
        texts.append(sorted(line for line in generate_latest(registry).decode().splitlines()
                            if line.startswith(ours_prefixes)))
        prom.shutdown()
    ours, ref = texts
    assert any(line.startswith("chronograph_lap_duration_milliseconds_bucket") for line in ours)
    assert ours == ref


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() is POSIX-only")
def test_fork_while_a_lap_is_being_recorded_leaves_the_child_working() -> None:
    """gunicorn --preload forks a process whose deferred worker may be inside ``record``: the child
    gets a fresh lock (else its first collection, and its exit-time shutdown, would hang)."""
    ours = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[ours], shutdown_on_exit=False)
    sink = LapMetrics(mp)
    sink(make_lap("parent"))
    with sink.streams.lock:  # as if another thread were mid-record at fork time
        pid = os.fork()
        if pid == 0:  # child: record and collect, killed by SIGALRM if the lock were still held
            code = 1
            try:
                signal.alarm(20)
                sink(make_lap("child"))
                points = exported(ours.get_metrics_data())["chronograph.lap.duration"]["points"]
                counts = {dict(p.attributes)["chronograph.command"]: p.count for p in points.values()}
                code = 0 if counts == {"parent": 1, "child": 1} else 3
            finally:
                os._exit(code)
    deadline = time.monotonic() + 30
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        assert time.monotonic() < deadline, "child did not finish"
        time.sleep(0.01)
    assert os.waitstatus_to_exitcode(status) == 0
