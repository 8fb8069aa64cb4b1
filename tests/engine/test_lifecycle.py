"""Issue 9 items 2 and 4 on the processor's side: BaseException from a sink, a blocked sink at
shutdown, one overall force_flush deadline, laps that end after shutdown (handled or counted)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_chronograph as chrono
from otel_chronograph import ChronographProcessor, Lap, load_config

CFG = {"recorder": {"enabled": False}}


def setup(sinks: list[Any] = (), deferred: list[Any] = ()) -> tuple[TracerProvider, ChronographProcessor,
                                                                     InMemorySpanExporter]:
    provider = TracerProvider()
    exporter = InMemorySpanExporter()
    proc = ChronographProcessor(load_config(CFG, environ={}), [SimpleSpanProcessor(exporter)],
                                sinks=list(sinks), deferred_sinks=list(deferred), metrics_enabled=False)
    provider.add_span_processor(proc)
    return provider, proc, exporter


def one_lap(provider: TracerProvider, name: str = "cmd") -> None:
    with chrono.lap(name, tracer_provider=provider), chrono.sector("s", tracer_provider=provider):
        pass


@pytest.mark.parametrize("exc", [SystemExit(3), KeyboardInterrupt()])
def test_base_exception_from_a_sink_still_exports_the_lap_root(exc: BaseException) -> None:
    seen: list[Lap] = []

    def bad(lap: Lap) -> None:
        raise exc

    provider, proc, exporter = setup(sinks=[bad, seen.append])
    with pytest.raises(type(exc)):
        one_lap(provider)
    roots = [s for s in exporter.get_finished_spans() if "chronograph.request_id" in (s.attributes or {})]
    assert len(roots) == 1  # annotated and exported before the exception went on
    assert len(seen) == 1  # the other sinks ran
    assert proc.failures[0] == 1


def test_base_exception_in_a_deferred_sink_does_not_kill_the_worker() -> None:
    seen: list[Lap] = []
    calls = [0]

    def bad(lap: Lap) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise SystemExit(1)

    provider, proc, _ = setup(deferred=[bad, seen.append])
    for _ in range(3):
        one_lap(provider)
    assert proc.force_flush(5000)
    assert len(seen) == 3


def test_blocked_deferred_sink_bounds_shutdown_and_exporters_flush_first() -> None:
    release = threading.Event()

    def blocked(lap: Lap) -> None:
        release.wait(120)

    provider, proc, exporter = setup(deferred=[blocked])
    one_lap(provider)
    start = time.monotonic()
    proc.shutdown()
    took = time.monotonic() - start
    release.set()
    assert took < 15, took  # one deadline (10 s) for every sink, not 30 s per stage
    assert exporter.get_finished_spans()  # the exporting processor was shut down (flushed) first


def test_force_flush_has_one_overall_deadline() -> None:
    release = threading.Event()

    class Slow:
        def __call__(self, lap: Lap) -> None:
            pass

        def flush(self, timeout_s: float) -> bool:
            release.wait(timeout_s)
            return False

    provider, proc, _ = setup(sinks=[Slow(), Slow()], deferred=[Slow(), Slow()])
    one_lap(provider)
    start = time.monotonic()
    assert proc.force_flush(1000) is False
    took = time.monotonic() - start
    release.set()
    assert took < 1.8, took  # asked 1 s; four sinks with their own timeouts took 4 s before


def test_laps_after_shutdown_are_exported_and_counted_never_lost_silently() -> None:
    recorded: list[Lap] = []
    provider, proc, _ = setup(deferred=[recorded.append])
    one_lap(provider)
    proc.shutdown()
    assert len(recorded) == 1
    for _ in range(5):
        one_lap(provider)  # the provider still calls on_end after the processor shut down
    assert proc.stats["sink_queue_dropped"] == 5
    assert len(recorded) == 1


def test_sixteen_threads_racing_shutdown_never_crash_and_every_lap_is_accounted() -> None:
    recorded: list[Lap] = []
    provider, proc, _ = setup(deferred=[recorded.append])
    stop = threading.Event()
    made = [0] * 16

    def work(i: int) -> None:
        while not stop.is_set():
            one_lap(provider, f"cmd{i}")
            made[i] += 1

    threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    while sum(made) < 200:
        time.sleep(0.001)
    proc.shutdown()
    stop.set()
    for t in threads:
        t.join(30)
    stats = proc.stats
    assert stats["laps_derived"] == sum(made)
    assert len(recorded) + stats["sink_queue_dropped"] == sum(made)
