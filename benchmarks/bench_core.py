"""Core benchmarks (issue 2). Every figure is a ratio against a baseline measured in the same run.

Providers are made with ``shutdown_on_exit=False``: otherwise ``atexit`` keeps every repetition's
providers (and all they reference) alive, the heap grows from one repetition to the next and the
garbage collector's full passes slow later repetitions down, whichever setup they measure.

(a) per-span cost of a lap with four sectors: bare SDK + BatchSpanProcessor vs the same wrapped by
    chronograph (annotation and metrics on, display off); time runs until ``shutdown()`` has flushed,
    so deferred work counts. Repetitions alternate between the two setups; medians are reported.
(b) laps derived vs laps created when one thread creates spans as fast as it can, with a slow exporter
    behind a small BatchSpanProcessor queue (so the BSP drops spans): every lap must still be derived.
(c) peak memory with 1,000,000 spans whose roots never end, bounded by ``max_pending_traces``.

Run: ``python benchmarks/bench_core.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import set_span_in_context

import otel_chronograph as chrono

SECTORS = ("init", "load", "exec", "format")
CONFIG: dict[str, Any] = {"display": {"split_times": False}, "recorder": {"enabled": False},
                          "billing": {"enabled": False, "rates": {"faf score": "0.001"}}}


class CountingExporter(SpanExporter):
    """Counts what reaches the exporter; ``delay_s`` per batch simulates a slow backend."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.count = 0
        self.annotated = 0
        self.delay_s = delay_s

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.count += len(spans)
        self.annotated += sum(1 for s in spans if s.attributes and "chronograph.lap_ms" in s.attributes)
        if self.delay_s:
            time.sleep(self.delay_s)
        return SpanExportResult.SUCCESS


def workload(provider: TracerProvider, laps: int) -> None:
    tracer = provider.get_tracer("bench")
    for _ in range(laps):
        with tracer.start_as_current_span("faf score", attributes={"chronograph.lap": True,
                                                                   "chronograph.command": "faf score",
                                                                   "chronograph.tier": "pro"}):
            for name in SECTORS:
                with tracer.start_as_current_span(name, attributes={"chronograph.sector": name}):
                    pass


def run_bare(laps: int) -> float:
    provider = TracerProvider(shutdown_on_exit=False)
    provider.add_span_processor(BatchSpanProcessor(CountingExporter()))
    t0 = time.perf_counter()
    workload(provider, laps)
    provider.shutdown()
    return time.perf_counter() - t0


def run_chrono(laps: int, config: dict[str, Any] | None = None, metrics: bool = True) -> float:
    provider = TracerProvider(shutdown_on_exit=False)
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()], shutdown_on_exit=False)
    proc = chrono.ChronographProcessor(chrono.load_config(config or CONFIG),
                                       [BatchSpanProcessor(CountingExporter())],
                                       meter_provider=meter_provider, metrics_enabled=metrics)
    provider.add_span_processor(proc)
    t0 = time.perf_counter()
    workload(provider, laps)
    provider.shutdown()
    elapsed = time.perf_counter() - t0
    assert proc.stats["laps_derived"] == laps, proc.stats
    meter_provider.shutdown()
    return elapsed


def compare(name: str, base: Callable[[int], float], other: Callable[[int], float], laps: int,
            reps: int) -> float:
    spans = laps * (1 + len(SECTORS))
    b: list[float] = []
    o: list[float] = []
    base(laps // 10)  # warm-up: imports, caches
    other(laps // 10)
    for _ in range(reps):
        gc.collect()
        b.append(base(laps))
        gc.collect()
        o.append(other(laps))
    mb, mo = statistics.median(b), statistics.median(o)
    ratios = sorted(x / y for x, y in zip(o, b, strict=False))
    print(f"{name}: baseline {mb / spans * 1e6:.2f} us/span, with it {mo / spans * 1e6:.2f} us/span; "
          f"ratio of medians x{mo / mb:.3f} (per-rep ratios {', '.join(f'{r:.2f}' for r in ratios)}); "
          f"{reps} reps x {laps} laps x {1 + len(SECTORS)} spans")
    return mo / mb


def flood(laps: int) -> None:
    """(b): spans as fast as one thread can; a slow exporter and a small queue make the BSP drop."""
    exporter = CountingExporter(delay_s=0.005)
    provider = TracerProvider(shutdown_on_exit=False)
    proc = chrono.install(provider, span_processors=[BatchSpanProcessor(exporter, max_queue_size=512,
                                                                        max_export_batch_size=128)],
                          config=CONFIG, meter_provider=MeterProvider(shutdown_on_exit=False))
    t0 = time.perf_counter()
    workload(provider, laps)
    created_s = time.perf_counter() - t0
    provider.shutdown()
    spans = laps * (1 + len(SECTORS))
    print(f"(b) flood: {laps} laps created in {created_s:.2f}s ({spans / created_s:,.0f} spans/s); "
          f"laps derived {proc.stats['laps_derived']} / {laps}; the BatchSpanProcessor exported "
          f"{exporter.count} of {spans} spans (dropped {spans - exporter.count}), "
          f"annotated lap spans exported {exporter.annotated}")


def never_ending(total_spans: int, max_pending: int) -> None:
    """(c): roots that never end, each with four ended children; memory must stay bounded."""
    def once(with_chrono: bool) -> tuple[int, dict[str, int]]:
        provider = TracerProvider(shutdown_on_exit=False)
        stats: dict[str, int] = {}
        proc = None
        if with_chrono:
            cfg = {**CONFIG, "laps": {"max_pending_traces": max_pending}}
            proc = chrono.install(provider, config=cfg, meter_provider=MeterProvider(shutdown_on_exit=False))
        tracer = provider.get_tracer("bench")
        gc.collect()
        tracemalloc.start()
        made = 0
        while made < total_spans:
            root = tracer.start_span("faf score", attributes={"chronograph.lap": True})
            ctx = set_span_in_context(root)
            for name in SECTORS:
                tracer.start_span(name, context=ctx, attributes={"chronograph.sector": name}).end()
            made += 1 + len(SECTORS)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        if proc is not None:
            stats = proc.stats
        provider.shutdown()
        return peak, stats

    bare_peak, _ = once(False)
    peak, stats = once(True)
    print(f"(c) {total_spans:,} spans, roots never end: peak traced memory "
          f"bare SDK {bare_peak / 2**20:.1f} MiB, "
          f"with chronograph {peak / 2**20:.1f} MiB (max_pending_traces={max_pending}); "
          f"pending {stats['pending']}, evicted {stats['evicted']} (counted), "
          f"x{peak / max(bare_peak, 1):.1f} of bare")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke run)")
    args = ap.parse_args(argv)
    laps, reps = (500, 3) if args.quick else (4000, 7)
    print(f"python {sys.version.split()[0]}, otel-chronograph {chrono.__version__}")
    compare("(a) per-span cost, 4-sector lap, annotation+metrics on", run_bare, run_chrono, laps, reps)
    compare("(a') same with the metrics sink off (the processor's own share)", run_bare,
            lambda n: run_chrono(n, metrics=False), laps, reps)
    flood(2000 if args.quick else 20000)
    never_ending(50_000 if args.quick else 1_000_000, 10_000)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
