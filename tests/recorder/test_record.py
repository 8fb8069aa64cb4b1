"""Timelines and summaries built from real laps: order, elapsed times, failures, concurrency."""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime

import pytest

import otel_chronograph as chrono
from otel_chronograph.recorder import FlightRecord, decode_lap, encode_lap
from otel_chronograph.recorder._record import iso_timestamp

from .helpers import recording, synthetic_lap


def test_timeline_has_every_milestone_in_time_order_with_elapsed_times() -> None:
    with recording() as (p, proc, rec):
        with chrono.lap("faf score", tier="pro", session_id="conv-1", tracer_provider=p) as lap:
            lap.event("User Message Received", model="llama3.2", tokens=6)
            for name in ("init", "load", "exec"):
                with chrono.sector(name, tracer_provider=p):
                    if name == "load":
                        chrono.event("Session Cache Lookup", hit=True)
            lap.event("Response Sent")
        proc.force_flush()
        record = rec.get(lap.request_id)
    assert record is not None
    assert record.id == lap.request_id and record.conversation_id == "conv-1"
    stages = [e["stage"] for e in record.events]
    assert stages == ["Lap Start", "User Message Received", "init start", "init end", "load start",
                      "Session Cache Lookup", "load end", "exec start", "exec end", "Response Sent",
                      "Lap End"]
    elapsed = [e["elapsed_ms"] for e in record.events]
    assert elapsed == sorted(elapsed) and elapsed[0] == 0
    assert elapsed[-1] == pytest.approx(record.lap_ms, abs=0.001)
    for e in record.events:  # ISO timestamps agree with the elapsed times
        t = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp() * 1000
        assert abs(t - (record.timestamp + e["elapsed_ms"])) < 2
    assert record.events[1]["details"] == {"model": "llama3.2", "tokens": 6}
    assert record.events[5]["details"]["hit"] is True and record.events[5]["sector"] == "load"


def test_summary_gives_each_sector_its_share_and_the_rest_as_other() -> None:
    record = FlightRecord.from_lap(synthetic_lap(1, lap_ms=100.0))
    s = record.summary
    assert s["total_ms"] == 100.0
    assert [(b["name"], b["ms"], b["share"]) for b in s["breakdown"]] == [
        ("init", 20.0, 20.0), ("load", 20.0, 20.0), ("exec", 20.0, 20.0), ("format", 20.0, 20.0)]
    assert s["other"] == {"name": "Other", "ms": 20.0, "share": 20.0}
    assert sum(b["ms"] for b in s["breakdown"]) + s["other"]["ms"] == pytest.approx(s["total_ms"])


def test_a_failed_request_keeps_its_partial_timeline_and_the_error() -> None:
    with recording() as (p, proc, rec):
        with pytest.raises(RuntimeError), \
                chrono.lap("faf fail", session_id="conv-2", tracer_provider=p) as lap:
            with chrono.sector("init", tracer_provider=p):
                lap.event("Tool Decision", tool="search")
            with chrono.sector("load", tracer_provider=p):
                raise RuntimeError("backend timed out")
            with chrono.sector("exec", tracer_provider=p):  # never reached
                pass
        proc.force_flush()
        record = rec.get(lap.request_id)
    assert record is not None
    assert record.error and record.status == "RED"
    assert "backend timed out" in (record.error_message or "")
    stages = [e["stage"] for e in record.events]
    assert stages == ["Lap Start", "init start", "Tool Decision", "init end", "load start", "Exception",
                      "load end", "Lap End"]
    exc = record.events[5]
    assert exc["kind"] == "error" and exc["details"]["type"] == "RuntimeError"
    assert exc["details"]["message"] == "backend timed out" and exc["details"]["span"] == "load"
    assert record.events[6]["details"]["error"] is True
    assert "exec" not in record.sectors


def test_concurrent_laps_in_threads_each_get_their_own_record() -> None:
    with recording(max_records=500) as (p, proc, rec):
        ids: dict[str, int] = {}
        lock = threading.Lock()
        start = threading.Barrier(16)

        def work(worker: int) -> None:
            start.wait()
            for j in range(10):
                with chrono.lap("faf score", session_id=f"conv-{worker}", tracer_provider=p) as lap, \
                        chrono.sector("init", tracer_provider=p):
                    lap.event("Marker", worker=worker, j=j)
                with lock:
                    ids[lap.request_id] = worker * 100 + j

        threads = [threading.Thread(target=work, args=(w,)) for w in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        proc.force_flush()
        assert len(ids) == 160
        for rid, tag in ids.items():
            record = rec.get(rid)
            assert record is not None
            markers = [e for e in record.events if e["stage"] == "Marker"]
            assert len(markers) == 1
            assert markers[0]["details"]["worker"] * 100 + markers[0]["details"]["j"] == tag
            assert record.conversation_id == f"conv-{tag // 100}"


async def test_concurrent_laps_in_asyncio_tasks_each_get_their_own_record() -> None:
    with recording() as (p, proc, rec):
        async def request(k: int) -> str:
            async with chrono.lap("faf chat", session_id=f"conv-{k}", tracer_provider=p) as lap, \
                    chrono.sector("backend", tracer_provider=p):
                await asyncio.sleep(0)  # yield so that the tasks interleave
                lap.event("Response Received", k=k)
            return str(lap.request_id)

        ids = await asyncio.gather(*(request(k) for k in range(50)))
        proc.force_flush()
        assert len(set(ids)) == 50
        for k, rid in enumerate(ids):
            record = rec.get(rid)
            assert record is not None and record.conversation_id == f"conv-{k}"
            received = [e for e in record.events if e["stage"] == "Response Received"]
            assert [e["details"]["k"] for e in received] == [k]


def test_lap_documents_round_trip() -> None:
    lap = synthetic_lap(7, error=True)
    assert decode_lap(encode_lap(lap)) == lap
    with pytest.raises(ValueError):
        decode_lap("[99]")
    with pytest.raises(ValueError):
        decode_lap("not json")


def test_iso_timestamps_are_utc_with_milliseconds() -> None:
    assert iso_timestamp(1_771_597_921_000_123_456) == "2026-02-20T14:32:01.000Z"
    assert iso_timestamp(1_771_597_921_999_999_999) == "2026-02-20T14:32:01.999Z"
