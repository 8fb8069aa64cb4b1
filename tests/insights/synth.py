"""Seeded, labelled synthetic telemetry for the anomaly and regression detectors.

Latencies are log-normal per operation with daily and weekly seasonality in both traffic and
latency; on top of that the generators plant what a detector must find (slow spans, step
regressions) and decoys it must not report (seasonal peaks, a heavy-tailed operation, a noisy one,
a low-traffic one, a transient spike, a speed-up). Records come from ``helpers.span``;
``helpers.store`` writes them through the production ``span_row`` and ``insert_spans``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from otel_chronograph.engine import SpanRecord
from otel_chronograph.insights._store import _SPAN_COLUMNS, open_store
from tests.insights.helpers import EPOCH_NS, span

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True)
class Op:
    """One operation's normal behaviour: median latency, log-sd, traffic and seasonality."""

    service: str
    name: str
    median_ms: float
    sigma: float
    per_hour: float
    #: latency multiplier in the daily peak (weekdays 09:00-18:00) and on weekends
    peak: float = 1.0
    weekend: float = 1.0
    #: (start hour, end hour, multiplier): a fixed daily window, every day (a nightly batch, lunch)
    window: tuple[int, int, float] | None = None
    #: heavy tail: (share, multiplier) mixture components on top of the log-normal body
    tail: tuple[tuple[float, float], ...] = ()
    #: log-sd of a per-hour level shared by the hour's spans (bursty, noisy operations)
    hourly_jitter: float = 0.0
    #: traffic follows the daily shape (quiet nights) unless flat
    flat_traffic: bool = False

    @property
    def operation(self) -> str:
        return f"{self.service}: {self.name}"


@dataclass
class Telemetry:
    """Generated spans and their labels (span ids as the store writes them: 16 hex digits)."""

    records: list[SpanRecord]
    anomalous: set[str] = field(default_factory=set)
    #: operation -> planted step changes [(ns since the epoch, multiplier)]
    changes: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


def _weekday_hour(t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Day of week (0 = Monday, EPOCH_NS is a Monday) and hour of day for seconds after EPOCH_NS."""
    return (t_s // DAY).astype(int) % 7, (t_s % DAY // HOUR).astype(int)


def _traffic_shape(hours: np.ndarray) -> np.ndarray:
    """Relative traffic by hour of day: quiet nights (0.3), busy afternoons (1.0)."""
    return 0.3 + 0.7 * np.clip(np.sin((hours - 6) / 24 * 2 * np.pi) * 1.2, 0, 1)


def location(op: Op, t_s: np.ndarray) -> np.ndarray:
    """The true seasonal median of ln(ms) of ``op`` at ``t_s`` (seconds after EPOCH_NS)."""
    day, hour = _weekday_hour(t_s)
    loc = np.full(t_s.shape, math.log(op.median_ms))
    weekend = day >= 5
    loc += np.where((~weekend) & (hour >= 9) & (hour < 18), math.log(op.peak), 0.0)
    loc += np.where(weekend, math.log(op.weekend), 0.0)
    if op.window:
        lo, hi, mult = op.window
        loc += np.where((hour >= lo) & (hour < hi), math.log(mult), 0.0)
    return loc


def arrivals(op: Op, rng: np.random.Generator, days: float) -> np.ndarray:
    """Sorted span start times (s after EPOCH_NS): Poisson per hour, daily traffic shape."""
    hours = np.arange(int(days * 24))
    rate = np.full(hours.shape, op.per_hour) if op.flat_traffic else op.per_hour * _traffic_shape(hours % 24)
    counts = rng.poisson(rate)
    starts = np.repeat(hours * HOUR, counts) + rng.uniform(0, HOUR, counts.sum())
    return np.sort(starts)


def log_latency(op: Op, rng: np.random.Generator, t_s: np.ndarray, days: float) -> np.ndarray:
    """Normal ln(ms) at ``t_s``: seasonal location, log-normal noise, hourly jitter, heavy tail."""
    ld = location(op, t_s) + rng.normal(0, op.sigma, t_s.shape)
    if op.hourly_jitter:
        level = rng.normal(0, op.hourly_jitter, int(days * 24) + 1)
        ld += level[(t_s // HOUR).astype(int)]
    u = rng.uniform(size=t_s.shape)
    edge = 0.0
    for share, mult in op.tail:
        ld += np.where((u >= edge) & (u < edge + share), math.log(mult), 0.0)
        edge += share
    return ld


def _records(op: Op, t_s: np.ndarray, ld: np.ndarray) -> list[SpanRecord]:
    return [span(op.name, float(t), float(math.exp(d)), service=op.service)
            for t, d in zip(t_s, ld, strict=True)]


def sid(record: SpanRecord) -> str:
    """A record's span id as the store writes it."""
    return f"{record.span_id:016x}"


# --- anomalies --------------------------------------------------------------------------------------

ANOMALY_OPS = (
    Op("web", "GET /orders/{id}", 40, 0.30, 70, peak=1.6),
    Op("web", "POST /checkout", 180, 0.35, 30, weekend=0.7),
    Op("db", "SELECT orders", 4, 0.40, 90, flat_traffic=True),
    # seasonal-peak decoy: every day 12:00-14:00 is 4x slower (a global baseline flags its spans)
    Op("search", "GET /search", 120, 0.45, 45, window=(12, 14, 4.0)),
    # heavy-tailed decoy: 15 % cache misses at 6x, 1 % cold starts at 20x, never anomalous
    Op("cache", "GET session", 2, 0.25, 50, tail=((0.15, 6.0), (0.01, 20.0))),
)
#: ops that receive planted anomalies (not the heavy-tailed decoy)
ANOMALY_TARGETS = (0, 1, 2, 3)
LOW_TRAFFIC = Op("admin", "POST /reindex", 300, 0.3, 0)


def anomaly_telemetry(seed: int = 1, days: float = 14, planted: int = 300) -> Telemetry:
    """≥ 50k normal spans over ``days`` and ``planted`` slow spans (6-12 sigma above their hour's
    median, so 4.1x-37x slower), spread over four operations; decoys as in ``ANOMALY_OPS`` plus a
    low-traffic operation (20 spans, one of them 10x slow) that has too little data to judge."""
    rng = np.random.default_rng(seed)
    out = Telemetry([])
    per_target = np.full(len(ANOMALY_TARGETS), planted // len(ANOMALY_TARGETS))
    per_target[: planted % len(ANOMALY_TARGETS)] += 1
    for i, op in enumerate(ANOMALY_OPS):
        t = arrivals(op, rng, days)
        ld = log_latency(op, rng, t, days)
        chosen: np.ndarray = np.array([], dtype=int)
        if i in ANOMALY_TARGETS:
            k = int(per_target[ANOMALY_TARGETS.index(i)])
            chosen = rng.choice(len(t), size=k, replace=False)
            ld[chosen] = location(op, t[chosen]) + rng.uniform(6, 12, k) * op.sigma
        recs = _records(op, t, ld)
        out.anomalous.update(sid(recs[j]) for j in chosen)
        out.records.extend(recs)
    t = np.sort(rng.uniform(0, days * DAY, 20))
    ld = rng.normal(math.log(LOW_TRAFFIC.median_ms), LOW_TRAFFIC.sigma, 20)
    ld[7] += math.log(10)
    out.records.extend(_records(LOW_TRAFFIC, t, ld))
    return out


# --- regressions ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    """A planted level change: at ``at_s`` seconds after EPOCH_NS latency is multiplied by ``mult``
    (until ``until_s`` when given: a transient)."""

    at_s: float
    mult: float
    until_s: float | None = None


def _at(day: int, hour: int, minute: int) -> float:
    return day * DAY + hour * HOUR + minute * 60.0


#: (operation, steps, is it a regression the detector must report)
REGRESSION_OPS: tuple[tuple[Op, tuple[Step, ...], bool], ...] = (
    (Op("web", "GET /orders/{id}", 40, 0.30, 60, peak=1.6), (Step(_at(9, 10, 37), 1.3),), True),
    (Op("web", "POST /checkout", 180, 0.35, 30, weekend=0.7), (Step(_at(4, 15, 12), 1.6),), True),
    (Op("db", "SELECT orders", 4, 0.40, 80, flat_traffic=True), (Step(_at(12, 3, 48), 2.0),), True),
    (Op("api", "GET /search", 120, 0.45, 40),
     (Step(_at(5, 8, 20), 1.4), Step(_at(10, 14, 5), 1.5)), True),
    # decoys
    (Op("report", "GET /dashboard", 250, 0.35, 40, peak=1.3, weekend=1.8), (), False),
    (Op("recs", "GET /recommendations", 90, 0.8, 30, hourly_jitter=0.15), (), False),
    (Op("admin", "POST /reindex", 300, 0.5, 0.3, flat_traffic=True), (), False),
    (Op("pay", "POST /charge", 150, 0.3, 40), (Step(_at(8, 13, 0), 3.0, until_s=_at(8, 15, 0)),), False),
    (Op("stock", "GET /stock", 60, 0.3, 40), (Step(_at(7, 11, 30), 0.6),), False),
)


def regression_telemetry(seed: int = 2, days: float = 14) -> Telemetry:
    """~120k spans over ``days`` with the steps of ``REGRESSION_OPS``; ``changes`` names the planted
    regressions (persistent slow-downs) only: decoys are weekly seasonality (weekends 1.8x slower),
    a noisy bursty operation, a low-traffic one (~100 spans), a 2-hour 3x spike that recovers, and a
    speed-up."""
    rng = np.random.default_rng(seed)
    out = Telemetry([])
    for op, steps, planted in REGRESSION_OPS:
        t = arrivals(op, rng, days)
        ld = log_latency(op, rng, t, days)
        for step in steps:
            on = (t >= step.at_s) & (t < (step.until_s if step.until_s is not None else math.inf))
            ld[on] += math.log(step.mult)
        out.records.extend(_records(op, t, ld))
        if planted:
            out.changes[op.operation] = [(EPOCH_NS + int(s.at_s * 1e9), s.mult) for s in steps]
    return out


# --- writing ----------------------------------------------------------------------------------------

def bulk_store(path: Path | str, n_spans: int, seed: int = 3, days: float = 28) -> duckdb.DuckDBPyConnection:
    """A store of about ``n_spans`` spans over ``days`` (columns built in numpy, no SpanRecords):
    the anomaly operations scaled up, 0.5 % of spans 8 sigma slow and a 1.5x step in the first
    operation at 70 % of the time, for runtime measurements."""
    rng = np.random.default_rng(seed)
    ops = ANOMALY_OPS
    shape = float(np.mean(_traffic_shape(np.arange(24))))
    total_per_hour = sum(op.per_hour * (1.0 if op.flat_traffic else shape) for op in ops)
    scale = n_spans / (total_per_hour * days * 24)
    conn = open_store(str(path))
    for i, op in enumerate(ops):
        big = Op(op.service, op.name, op.median_ms, op.sigma, op.per_hour * scale, op.peak, op.weekend,
                 op.window, op.tail, op.hourly_jitter, op.flat_traffic)
        t = arrivals(big, rng, days)
        ld = log_latency(big, rng, t, days)
        hit = rng.uniform(size=t.shape) < 0.005
        ld[hit] += 8 * op.sigma
        if i == 0:  # one regression, so the span-level confirmation runs too
            ld[t >= days * DAY * 0.7] += math.log(1.5)
        n = len(t)
        start = EPOCH_NS + (t * 1e9).astype(np.int64)
        dur_ns = (np.exp(ld) * 1e6).astype(np.int64)
        batch = pa.table({
            "trace_id": [f"{i:08x}{j:024x}" for j in range(n)],
            "span_id": [f"{i:04x}{j:012x}" for j in range(n)],
            "parent_id": pa.nulls(n, pa.string()), "parent_remote": np.ones(n, dtype=bool),
            "service": [op.service] * n, "name": [op.name] * n, "operation": [op.operation] * n,
            "kind": ["SERVER"] * n, "start_ns": start, "end_ns": start + dur_ns,
            "duration_ms": dur_ns / 1e6, "error": np.zeros(n, dtype=bool),
            "status_message": pa.nulls(n, pa.string()), "attributes": ["{}"] * n,
            "resource": [f'{{"service.name":"{op.service}"}}'] * n, "events": ["[]"] * n,
            "label": ["prod"] * n})
        conn.register("_synth_batch", batch)
        conn.execute(f"INSERT INTO spans ({', '.join(_SPAN_COLUMNS)}) SELECT {', '.join(_SPAN_COLUMNS)} "
                     "FROM _synth_batch")
        conn.unregister("_synth_batch")
    return conn
