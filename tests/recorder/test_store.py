"""The store: LRU eviction, persistence across a restart, retention purge, history and anomalies."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

import otel_chronograph as chrono
from otel_chronograph.recorder import FlightStore, History
from tests.core.helpers import wait_for

from .helpers import recording, synthetic_lap

HOUR_NS = 3600 * 1_000_000_000


def test_lru_evicts_the_least_recently_used() -> None:
    store = FlightStore(max_records=3)
    laps = [synthetic_lap(i) for i in range(4)]
    for lap in laps[:3]:
        store.add(lap)
    assert store.get(laps[0].request_id) is not None  # touch: now 1 is least recently used
    store.add(laps[3])
    assert len(store) == 3
    assert store.get(laps[1].request_id) is None
    assert store.get(laps[1].trace_id) is None
    assert {r.id for r in store.recent(10)} == {laps[0].request_id, laps[2].request_id, laps[3].request_id}


def test_memory_store_lookups_by_request_or_trace_id_and_filters() -> None:
    store = FlightStore()
    store.add(synthetic_lap(1, command="a", status="GREEN"))
    store.add(synthetic_lap(2, command="b", status="RED"))
    store.add(synthetic_lap(3, command="a", status="RED"))
    assert store.get(f"{2:032x}").id == "req_0000000000000002"  # type: ignore[union-attr]
    assert [r.id[-1] for r in store.recent(10)] == ["3", "2", "1"]
    assert [r.id[-1] for r in store.recent(10, command="a")] == ["3", "1"]
    assert [r.id[-1] for r in store.recent(10, command="a", status="RED")] == ["3"]
    assert [r.id[-1] for r in store.recent(2)] == ["3", "2"]
    assert store.get("req_ffffffffffffffff") is None


def test_recorder_records_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "flight.db"
    with recording(persistent=True, path=str(db)) as (p, proc, _rec):
        with chrono.lap("faf score", session_id="conv-9", tracer_provider=p) as lap, \
                chrono.sector("init", tracer_provider=p):
            lap.event("Embedding Classifier", confidence=0.92)
        proc.force_flush()
    # journal mode is WAL, the table is there
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT count(*) FROM flight_records").fetchone()[0] == 1
    with FlightStore(db) as reopened:
        record = reopened.get(lap.request_id)
        assert record is not None and record.conversation_id == "conv-9"
        assert [e["stage"] for e in record.events] == [
            "Lap Start", "init start", "Embedding Classifier", "init end", "Lap End"]
        assert reopened.get(record.trace_id) is not None
        assert [r.id for r in reopened.recent(5)] == [lap.request_id]


def test_writes_are_batched_off_the_callers_path(tmp_path: Path) -> None:
    store = FlightStore(tmp_path / "b.db", batch_size=50, flush_interval_s=60)
    for i in range(49):
        store.add(synthetic_lap(i))
    assert store.get("req_0000000000000001") is not None  # readable at once from memory
    with sqlite3.connect(tmp_path / "b.db") as conn:
        assert conn.execute("SELECT count(*) FROM flight_records").fetchone()[0] == 0
    store.add(synthetic_lap(49))  # the 50th wakes the writer thread

    def written() -> bool:
        with sqlite3.connect(tmp_path / "b.db") as conn:
            return bool(conn.execute("SELECT count(*) FROM flight_records").fetchone()[0] == 50)

    wait_for(written, 10, "the batch to be written")
    store.close()


def test_retention_purge_removes_old_records(tmp_path: Path) -> None:
    now = time.time_ns()
    store = FlightStore(tmp_path / "r.db", retention_hours=24)
    store.add_many([synthetic_lap(i, start_ns=now - 30 * HOUR_NS + i) for i in range(5)])
    store.add_many([synthetic_lap(10 + i, start_ns=now - HOUR_NS + i) for i in range(3)])
    assert store.count() == 8
    assert store.purge(now) == 5
    assert store.count() == 3
    assert store.get("req_0000000000000001") is None
    assert store.history("faf score")[0] == 3
    store.close()
    with FlightStore(tmp_path / "r.db") as again:
        assert again.count() == 3


def test_background_cleanup_purges_without_being_asked(tmp_path: Path) -> None:
    store = FlightStore(tmp_path / "c.db", retention_hours=1)
    store.add_many([synthetic_lap(i, start_ns=time.time_ns() - 2 * HOUR_NS) for i in range(4)])
    store.add(synthetic_lap(9))
    store.start_cleanup(interval_s=0.05)
    wait_for(lambda: store.count() == 1, 10, "the cleanup thread to purge")
    assert store.get("req_0000000000000009") is not None
    store.close()


def test_memory_retention_purge() -> None:
    now = time.time_ns()
    store = FlightStore(retention_hours=2)
    store.add(synthetic_lap(1, start_ns=now - 3 * HOUR_NS))
    store.add(synthetic_lap(2, start_ns=now))
    assert store.purge(now) == 1
    assert [r.id for r in store.recent()] == ["req_0000000000000002"]


def test_history_median_p95_and_the_anomaly_flag() -> None:
    store = FlightStore(anomaly_factor=10)
    for i in range(20):
        store.add(synthetic_lap(i, lap_ms=10.0 + i))  # 10..29 ms
    count, median, p95 = store.history("faf score")
    assert (count, median, p95) == (20, 19.5, 28.0)
    slow = synthetic_lap(100, lap_ms=400.0)
    store.add(slow)
    cmp = store.compare(slow)
    assert cmp["count"] == 21 and cmp["median_ms"] == 20.0 and cmp["anomaly"] is True
    assert cmp["ratio"] == 20.0
    normal = synthetic_lap(101, lap_ms=150.0)  # 7.5x the median: not an anomaly at factor 10
    store.add(normal)
    assert store.compare(normal)["anomaly"] is False
    assert FlightStore(anomaly_factor=5).compare(normal)["anomaly"] is False  # no history, no anomaly
    other = synthetic_lap(102, command="other", lap_ms=400.0)
    store.add(other)
    assert store.compare(other)["count"] == 1 and store.compare(other)["anomaly"] is False


def test_history_follows_the_database_written_by_another_process(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    writer = FlightStore(db)
    reader = FlightStore(db)
    writer.add_many([synthetic_lap(i, lap_ms=5.0) for i in range(10)])
    assert reader.history("faf score")[:2] == (10, 5.0)
    writer.add_many([synthetic_lap(100 + i, lap_ms=100.0) for i in range(11)])
    assert reader.history("faf score")[:2] == (21, 100.0)
    assert writer.purge(time.time_ns() + 48 * HOUR_NS) == 21
    assert reader.history("faf score")[0] == 0
    writer.close()
    reader.close()


def test_history_structure() -> None:
    h = History()
    for v in (3.0, 1.0, 2.0):
        h.add("x", v)
    assert h.stats("x") == (3, 2.0, 3.0)
    h.remove("x", 3.0)
    assert h.stats("x") == (2, 1.5, 2.0)
    assert h.stats("nothing") == (0, 0.0, 0.0)


def test_concurrent_writers_and_readers(tmp_path: Path) -> None:
    store = FlightStore(tmp_path / "cc.db", max_records=100, batch_size=16, flush_interval_s=0.01)
    errors: list[BaseException] = []

    def write(base: int) -> None:
        for i in range(200):
            store.add(synthetic_lap(base + i))

    def read() -> None:
        try:
            for _ in range(200):
                store.recent(10)
                store.compare(synthetic_lap(1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(k * 1000,)) for k in range(4)]
    threads += [threading.Thread(target=read) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    store.flush()
    assert store.count() == 800
    assert len(store.recent_laps(1000)) == 800
    store.close()


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        FlightStore(max_records=0)
    with pytest.raises(FileNotFoundError):
        FlightStore("/nonexistent/dir/x.db", create=False)


def _race_close(db: Path) -> tuple[int, int, int]:
    """8 threads add records while the store closes: (rows written, dropped, added)."""
    store = FlightStore(db, max_records=10, batch_size=8, flush_interval_s=0.001)
    added = [0] * 8
    stop = threading.Event()

    def write(k: int) -> None:
        i = 0
        while not stop.is_set():
            store.add(synthetic_lap(k * 1_000_000 + i))
            i += 1
            added[k] = i

    threads = [threading.Thread(target=write, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    wait_for(lambda: sum(added) >= 500, what="laps being added")
    store.close()
    late = sum(added)
    wait_for(lambda: sum(added) >= late + 100, what="laps added after close")
    stop.set()
    for t in threads:
        t.join()
    assert store.write_failures == 0
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT count(*) FROM flight_records").fetchone()[0]
    return rows, store.dropped, sum(added)


def test_adds_racing_close_are_written_or_counted_never_lost(tmp_path: Path) -> None:
    """Issue 9 item 2: records added while the store closes are written or counted in ``dropped``."""
    for run in range(5):
        rows, dropped, added = _race_close(tmp_path / f"race{run}.db")
        assert rows + dropped == added, (run, rows, dropped, added)


def test_adding_after_close_is_counted(tmp_path: Path) -> None:
    store = FlightStore(tmp_path / "c.db")
    store.close()
    store.add(synthetic_lap(1))
    assert store.dropped == 1 and store.get(synthetic_lap(1).request_id) is not None  # still readable


def test_names_sqlite_cannot_encode_are_stored_escaped(tmp_path: Path) -> None:
    """A lone surrogate (a span name from hostile OTLP JSON) cannot be encoded as UTF-8: the record is
    stored with it escaped instead of failing its whole batch."""
    from dataclasses import replace

    lap = replace(synthetic_lap(1), command="bad \udc80 name", session_id="\ud800")
    with FlightStore(tmp_path / "s.db") as store:
        store.add(lap)
        store.add(synthetic_lap(2))
        assert store.flush() and store.write_failures == 0
    with FlightStore(tmp_path / "s.db", read_only=True) as store:
        assert store.count() == 2
        assert [r.id for r in store.recent(5, command="bad \udc80 name")] == [lap.request_id]
