"""Issue 9 item 8: a 10 MB attribute on a lap's events must not reach the sinks whole (it gave 653 MiB
in the recorder and a 964 MiB database for 34 laps): values are cut, with a visible marker, and counted."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

import otel_chronograph as chrono
from otel_chronograph.engine._derive import MAX_EVENT_ATTRIBUTES, MAX_VALUE_CHARS
from otel_chronograph.recorder import FlightStore


def test_huge_event_attributes_are_truncated_and_counted(tmp_path: Path) -> None:
    provider = TracerProvider()
    processor = chrono.install(provider, config={"recorder": {"enabled": True, "persistent": True,
                                                              "path": str(tmp_path / "f.db")}})
    big = "x" * 10_000_000
    tracemalloc.start()
    for _ in range(34):
        with chrono.lap("upload", tracer_provider=provider) as lap:
            lap.event("payload", body=big, tags=tuple(str(i) for i in range(1000)))
            lap.event("wide", **{f"k{i}": i for i in range(100)})
    processor.force_flush()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    processor.shutdown()
    with FlightStore(tmp_path / "f.db", read_only=True) as store:
        (record,) = store.recent(1)
        event, wide = record.lap.events[0], record.lap.events[1]
    assert len(wide.attributes) == MAX_EVENT_ATTRIBUTES
    assert wide.attributes["chronograph.truncated_attributes"] == 100 - MAX_EVENT_ATTRIBUTES + 1
    body = event.attributes["body"]
    assert len(body) < MAX_VALUE_CHARS + 100 and "truncated" in body
    assert len(event.attributes["tags"]) <= 128
    assert (tmp_path / "f.db").stat().st_size < 20 * 2**20
    assert processor.engine.deriver.truncated_values > 0
    assert peak < 200 * 2**20, peak  # the 10 MB string exists once (the span's), not per copy
