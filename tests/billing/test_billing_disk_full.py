"""Issue 9 item 3: the outbox on a real, tiny filesystem that fills up. A lap whose usage row cannot be
committed stays pending in memory (bounded), is retried, is counted in a metric and in `billing
status`, and is logged once with the reason (no traceback per lap). Once space is back, every lap is
in the outbox exactly once."""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from tests.mounts import tmpfs

from otel_chronograph import Lap, load_config
from otel_chronograph._pipeline import log_once
from otel_chronograph.billing import BillingSink


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "small", "size=3m") as target:
        yield target


def lap(i: int) -> Lap:
    return Lap(request_id=f"req_{i:016x}", trace_id=f"{i:032x}", span_id=f"{i:016x}", command="faf score",
               timestamp=1_763_762_400_000 + i, start_ns=0, end_ns=1, lap_ms=1.0, other_ms=0.0, sectors={},
               critical_path={}, critical_other_ms=0.0, status="GREEN", error=False, tier="pro",
               customer=f"cus_{i % 7}", score=None, cost=Decimal("0.001") * (1 + i % 3))


def test_disk_full_keeps_usage_pending_counted_and_retried(small_fs: Path, caplog: pytest.LogCaptureFixture
                                                            ) -> None:
    outbox = small_fs / "outbox.db"
    meter = {"outbox": str(outbox), "delivery": "external"}
    cfg = load_config({"billing": {"enabled": True, "meter": meter}}, environ={})
    sink = BillingSink(cfg, environ={})
    filler = small_fs / "filler"
    with filler.open("wb") as f:  # leave the outbox ~200 KB to grow into
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    filler.write_bytes(filler.read_bytes()[: -200 * 1024])
    caplog.set_level(logging.WARNING, "otel_chronograph")
    log_once.forget("billing-commit")  # logged once per process: another test may have used the key
    total = 8000
    for i in range(total):
        sink(lap(i))  # never raises into the application
    assert sink.uncommitted > 0, "the filesystem never filled: the test proves nothing"
    warnings = [r for r in caplog.records if "cannot commit" in r.getMessage()]
    assert len(warnings) == 1 and "full" in warnings[0].getMessage()
    assert not any(r.exc_info for r in caplog.records)
    status = subprocess.run([str(Path(sys.executable).parent / "chronograph"), "billing", "status",
                             "--outbox", str(outbox)], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    assert f"uncommitted {sink.uncommitted}" in status.stdout, status.stdout

    filler.unlink()  # space is back (and more: 8,000 rows and their WAL need more than 3 MB)
    subprocess.run(["mount", "-o", "remount,size=64m", str(small_fs)], check=True)
    assert sink.flush(30)
    assert sink.uncommitted == 0
    with sqlite3.connect(outbox) as db:
        ids = [r[0] for r in db.execute("SELECT identifier FROM usage")]
    assert len(ids) == len(set(ids)) == total
    sink.shutdown()
