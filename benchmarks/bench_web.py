"""Web benchmark (issue 10): what chronograph adds to a real request, measured in the same run.

A real FastAPI app with its real OpenTelemetry instrumentation (``FastAPIInstrumentor`` for the ASGI
server spans and HTTP server metrics, the sqlite3 instrumentation on a real SQLite file) serves
``GET /score/{name}``, which runs three queries. Requests are served in-process through httpx's
``ASGITransport`` (no sockets: the figures are the app's and the telemetry's CPU work).

Setups, alternated repetition by repetition:
- baseline: TracerProvider + BatchSpanProcessor (exporter that discards), MeterProvider with a periodic
  reader (exporter that discards) used by the FastAPI instrumentation;
- chronograph: the same, plus ``otel_chronograph.install(provider, span_processors=[BSP],
  meter_provider=...)`` with the default configuration (laps from the SERVER span, in-memory flight
  recorder, metrics; display and billing off by default).

Each repetition times its requests until ``shutdown()`` of both providers has returned: the chronograph
worker's deferred work (metrics, recorder), the BSP export and the final metrics collection are counted.
Wall and CPU (process, all threads) per request; medians, ratio of medians, per-repetition ratios.

Run: ``python benchmarks/bench_web.py [--requests 1000] [--reps 7] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    MetricExporter,
    MetricExportResult,
    MetricsData,
    PeriodicExportingMetricReader,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

import otel_chronograph as chrono

ROWS = 1000


class DiscardSpans(SpanExporter):
    def __init__(self) -> None:
        self.spans = 0
        self.annotated = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.spans += len(spans)
        self.annotated += sum(1 for s in spans if s.attributes and "chronograph.lap_ms" in s.attributes)
        return SpanExportResult.SUCCESS


class DiscardMetrics(MetricExporter):
    def __init__(self) -> None:
        super().__init__()
        self.names: set[str] = set()

    def export(self, metrics_data: MetricsData, timeout_millis: float = 10_000,
               **kwargs: Any) -> MetricExportResult:
        for rm in metrics_data.resource_metrics:
            for sm in rm.scope_metrics:
                self.names.update(m.name for m in sm.metrics)
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def make_db(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE scores (name TEXT PRIMARY KEY, score INTEGER, team TEXT)")
        db.executemany("INSERT INTO scores VALUES (?, ?, ?)",
                       [(f"player{i}", i * 7 % 101, f"team{i % 10}") for i in range(ROWS)])


def make_app(db_path: Path, provider: TracerProvider, meter_provider: MeterProvider) -> tuple[FastAPI, Any]:
    conn = SQLite3Instrumentor.instrument_connection(sqlite3.connect(db_path, check_same_thread=False),
                                                     tracer_provider=provider)
    app = FastAPI()

    @app.get("/score/{name}")
    async def score(name: str) -> dict[str, Any]:
        cur = conn.cursor()
        cur.execute("SELECT score, team FROM scores WHERE name = ?", (name,))
        row = cur.fetchone()
        cur.execute("SELECT COUNT(*), AVG(score) FROM scores WHERE team = ?", (row[1],))
        count, avg = cur.fetchone()
        cur.execute("SELECT COUNT(*) FROM scores WHERE score > ?", (row[0],))
        (better,) = cur.fetchone()
        return {"name": name, "score": row[0], "team_size": count, "team_avg": avg, "rank": better + 1}

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, meter_provider=meter_provider)
    return app, conn


def run(db_path: Path, requests: int, with_chrono: bool) -> tuple[float, float, dict[str, int]]:
    """(wall s, CPU s) per request from the first request to both providers shut down."""
    spans = DiscardSpans()
    metrics = DiscardMetrics()
    provider = TracerProvider(shutdown_on_exit=False)
    meter_provider = MeterProvider(
        metric_readers=[PeriodicExportingMetricReader(metrics, export_interval_millis=60_000)],
        shutdown_on_exit=False)
    bsp = BatchSpanProcessor(spans)
    proc = None
    if with_chrono:
        proc = chrono.install(provider, span_processors=[bsp], meter_provider=meter_provider)
    else:
        provider.add_span_processor(bsp)
    app, conn = make_app(db_path, provider, meter_provider)

    async def drive() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for i in range(requests):
                r = await client.get(f"/score/player{i % ROWS}")
                if r.status_code != 200:
                    raise RuntimeError(f"request failed: {r.status_code} {r.text}")

    c0 = time.process_time()
    t0 = time.perf_counter()
    asyncio.run(drive())
    provider.shutdown()  # BSP flushed; chronograph: every lap derived and through its deferred sinks
    meter_provider.shutdown()  # final collection and export
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    conn.close()
    info = {"spans": spans.spans, "annotated": spans.annotated,
            "lap_metric": int("chronograph.lap.duration" in metrics.names)}
    if proc is not None:
        info["laps"] = proc.stats["laps_derived"]
        if info["laps"] != requests or spans.annotated != requests:
            raise RuntimeError(f"expected {requests} laps and annotated roots, got {info}")
    return wall / requests, cpu / requests, info


def spread(values: Sequence[float]) -> str:
    return f"{min(values):.3f}-{max(values):.3f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="200 requests x 3 reps (smoke run)")
    args = ap.parse_args(argv)
    requests, reps = (200, 3) if args.quick else (args.requests, args.reps)
    print(f"python {sys.version.split()[0]}, otel-chronograph {chrono.__version__}; FastAPI + "
          f"FastAPIInstrumentor + sqlite3 instrumentation, 3 queries per request, httpx ASGITransport")
    with tempfile.TemporaryDirectory() as tmp:
        db_path = Path(tmp) / "scores.db"
        make_db(db_path)
        run(db_path, requests // 5, False)  # warm-up: imports, caches
        run(db_path, requests // 5, True)
        base: list[tuple[float, float]] = []
        with_it: list[tuple[float, float]] = []
        info: dict[str, int] = {}
        for _ in range(reps):
            gc.collect()
            base.append(run(db_path, requests, False)[:2])
            gc.collect()
            wall, cpu, info = run(db_path, requests, True)
            with_it.append((wall, cpu))
    for label, index in (("wall", 0), ("CPU", 1)):
        b = [x[index] for x in base]
        o = [x[index] for x in with_it]
        mb, mo = statistics.median(b), statistics.median(o)
        ratios = sorted(y / x for x, y in zip(b, o, strict=True))
        print(f"{label}: baseline {mb * 1e3:.3f} ms/request (spread {spread([x * 1e3 for x in b])}), "
              f"with chronograph {mo * 1e3:.3f} ms/request (spread {spread([x * 1e3 for x in o])}); "
              f"ratio of medians x{mo / mb:.3f}, +{(mo - mb) * 1e6:.0f} us/request "
              f"(per-rep ratios {', '.join(f'{r:.3f}' for r in ratios)})")
    print(f"{reps} reps x {requests} requests, alternating; last chronograph rep: {info}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
