"""Issue 9 item 3, the recorder's side: its database on a real, tiny filesystem that fills up. The app
keeps running; records that cannot be written stay queued (bounded) and are retried by the writer on
its own; the failures are counted in metrics and logged once with the reason, never a traceback per
write. Once space is back every record reaches the database without a flush call."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_chronograph import LapEvent, load_config
from otel_chronograph.recorder import FlightRecorder, recorder_sink_factory
from tests.core.helpers import wait_for
from tests.filesystems import fill, grow, small_filesystem

from .helpers import synthetic_lap


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "small") as where:
        yield where


def _points(reader: InMemoryMetricReader) -> dict[str, float]:
    data = reader.get_metrics_data()
    assert data is not None
    return {m.name: sum(p.value for p in m.data.data_points)  # type: ignore[attr-defined]
            for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}


def _rows(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM flight_records").fetchone()[0])


def test_disk_full_keeps_records_queued_counted_and_retried(small_fs: Path, caplog: pytest.LogCaptureFixture,
                                                             capfd: pytest.CaptureFixture[str]) -> None:
    db = small_fs / "flight.db"
    cfg = load_config({"recorder": {"enabled": True, "persistent": True, "path": str(db)}}, environ={})
    reader = InMemoryMetricReader()
    made = recorder_sink_factory(cfg, MeterProvider(metric_readers=[reader]))
    assert made is not None
    recorder, deferred = made
    assert deferred and isinstance(recorder, FlightRecorder)
    store = recorder.store
    fill(small_fs / "filler", leave_bytes=100 * 1024)
    caplog.set_level(logging.WARNING, "otel_chronograph")
    total = 3000
    for i in range(total):
        lap = synthetic_lap(i)
        payload = LapEvent("payload", lap.start_ns, 0.0, None, "root", {"body": "x" * 1000})
        recorder(replace(lap, events=[*lap.events, payload]))  # never raises into the deferred worker
    wait_for(lambda: store.write_failures > 0, 30, "a failed write")
    assert 0 < store.pending <= total
    warnings = [r for r in caplog.records if "cannot write" in r.getMessage()]
    assert len(warnings) == 1 and "full" in warnings[0].getMessage(), [r.getMessage() for r in warnings]
    assert not any(r.exc_info for r in caplog.records)
    assert "Traceback" not in capfd.readouterr().err
    points = _points(reader)
    assert points["chronograph.recorder.write_failures"] >= 1
    assert points["chronograph.recorder.pending"] == store.pending
    assert points["chronograph.recorder.dropped"] == 0

    (small_fs / "filler").unlink()  # space is back; the writer retries by itself (no flush here)
    grow(small_fs, "64m")
    wait_for(lambda: _rows(db) == total and store.pending == 0, 60,
               "every record written once space is back")
    assert store.dropped == 0
    recorder.shutdown()
    assert _rows(db) == total
