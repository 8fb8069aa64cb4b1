"""Many laps at once in threads and in asyncio tasks: each derived separately and exactly once."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .conftest import Harness

THREADS = 40
LAPS_PER_THREAD = 5  # 200 laps in threads
TASKS = 200  # and 200 in asyncio tasks, at the same time


def test_laps_in_threads_and_tasks_never_mix(make_harness: Any) -> None:
    h: Harness = make_harness({"billing": {"rates": {"thread": "0.001", "task": "0.002"}}})
    barrier = threading.Barrier(THREADS + 1, timeout=30)
    results: list[tuple[str, int, Any]] = []
    results_lock = threading.Lock()

    def thread_work(t: int) -> None:
        for j in range(LAPS_PER_THREAD):
            i = t * LAPS_PER_THREAD + j
            with h.lap("thread", tier="pro", customer=f"t{i}") as handle:
                with h.sector(f"t{i}-init"):
                    if j == 0:
                        barrier.wait()  # every thread has a lap open at this point
                    handle.event("picked", i=i)
                with h.sector("common"):
                    pass
            with results_lock:
                results.append(("thread", i, handle))

    async def task_work(i: int, gate: asyncio.Event) -> None:
        async with h.lap("task", tier="enterprise", customer=f"a{i}") as handle:
            async with h.sector(f"a{i}-init"):
                await gate.wait()  # every task has a lap open at this point
                handle.event("picked", i=i)
            async with h.sector("common"):
                await asyncio.sleep(0)
        with results_lock:
            results.append(("task", i, handle))

    async def all_tasks() -> None:
        gate = asyncio.Event()
        tasks = [asyncio.create_task(task_work(i, gate)) for i in range(TASKS)]
        await asyncio.sleep(0)
        barrier.wait()  # threads and tasks all mid-lap together
        gate.set()
        await asyncio.gather(*tasks)

    with ThreadPoolExecutor(THREADS) as pool:
        futures = [pool.submit(thread_work, t) for t in range(THREADS)]
        asyncio.run(all_tasks())
        for f in futures:
            f.result(timeout=60)

    total = THREADS * LAPS_PER_THREAD + TASKS
    assert len(results) == total
    request_ids = []
    for kind, i, handle in results:
        lap = handle.telemetry
        assert lap is not None, (kind, i)
        prefix = "t" if kind == "thread" else "a"
        assert lap.command == kind
        assert lap.request_id == handle.request_id
        assert list(lap.sectors) == [f"{prefix}{i}-init", "common"], (kind, i, lap.sectors)
        assert lap.customer == f"{prefix}{i}"
        assert [(e.name, e.attributes) for e in lap.events] == [("picked", {"i": i})]
        assert lap.span_count == 3
        assert not lap.truncated
        request_ids.append(lap.request_id)
    assert len(set(request_ids)) == total

    # each annotated root reached the exporter exactly once, with its own sectors
    annotated = Counter(s.attributes["chronograph.request_id"] for s in h.annotated())
    assert annotated == Counter(request_ids)
    assert len(h.exported()) == 3 * total
    # ... and every lap went through the sinks exactly once
    assert Counter(lap.request_id for lap in h.laps) == Counter(request_ids)
    stats = h.processor.stats
    assert stats["laps_derived"] == total
    assert stats["pending"] == 0
    assert (stats["evicted"], stats["dropped_spans"], stats["late_spans"], stats["failures"]) == (0, 0, 0, 0)
    points = h.metrics()
    lap_counts: Counter[str] = Counter()
    for p in points["chronograph.lap.duration"]:  # one point per (command, status, tier)
        lap_counts[p.attributes["chronograph.command"]] += p.count
    assert lap_counts == {"thread": THREADS * LAPS_PER_THREAD, "task": TASKS}
    cost = {p.attributes["chronograph.command"]: p.value for p in points["chronograph.cost"]}
    assert cost == {"thread": 0.2, "task": 0.8}  # 200 x 0.001 x 1 and 200 x 0.002 x 2, summed exactly


def test_concurrent_laps_with_grace_each_complete_once(make_harness: Any) -> None:
    """Children ending after their root in other threads: the lap waits, then completes once."""
    h: Harness = make_harness({"laps": {"grace_ms": 60_000}})
    n = 100
    started = threading.Barrier(n + 1, timeout=30)
    release = threading.Event()

    def work(i: int) -> str:
        root = h.tracer.start_span(f"lap{i}", attributes={"chronograph.lap": True})
        from opentelemetry import trace

        child = h.tracer.start_span("bg", context=trace.set_span_in_context(root),
                                    attributes={"chronograph.sector": "bg"})
        root.end()
        started.wait()
        assert release.wait(30)
        child.end()
        return format(root.get_span_context().span_id, "016x")

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(work, i) for i in range(n)]
        started.wait()  # every root has ended, no child has: nothing derived yet
        assert h.laps == []
        assert h.processor.pending_laps() == n
        release.set()
        ids = [f.result(timeout=60) for f in futures]
    assert Counter(lap.span_id for lap in h.laps) == Counter(ids)
    assert all(list(lap.sectors) == ["bg"] and not lap.truncated for lap in h.laps)
    assert h.processor.stats["forced"] == 0
