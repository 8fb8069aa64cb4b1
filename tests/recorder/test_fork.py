"""Issue 8 item 5: in a child forked after the parent recorded laps (its writer and purge threads
running), the child's laps reach the database without any flush call: the writer restarts in the child
on a connection of its own (never the parent's), and the parent's queued laps are not written twice."""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

import otel_chronograph as chrono
from tests.core.helpers import wait_for

from .helpers import recording


def _rows(db: Path, command: str) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT count(*) FROM flight_records WHERE command = ?",
                                (command,)).fetchone()[0])


def test_laps_recorded_in_a_forked_child_reach_the_store_without_a_flush(tmp_path: Path) -> None:
    db = tmp_path / "flight.db"
    with recording(persistent=True, path=str(db), retention_hours=1) as (provider, proc, rec):
        for _ in range(5):
            with chrono.lap("parent", tracer_provider=provider):
                pass
        proc.force_flush()
        store = rec.store
        assert store._writer.alive() and store._cleaner is not None and store._cleaner.alive()
        parent_conn = store._wconn
        with chrono.lap("parent", tracer_provider=provider):  # queued, not yet written, at fork()
            pass
        pid = os.fork()
        if pid == 0:  # the child: never flush, never shut down; exit without atexit hooks
            code = 1
            try:
                for _ in range(7):
                    with chrono.lap("child", tracer_provider=provider):
                        pass
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and _rows(db, "child") < 7:
                    time.sleep(0.02)
                ok = (_rows(db, "child") == 7 and store._writer.alive() and store._wconn is not None
                      and store._wconn is not parent_conn and store._cleaner.alive())
                code = 0 if ok else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        proc.force_flush()
        wait_for(lambda: _rows(db, "parent") == 6, what="the parent's laps")
        assert _rows(db, "child") == 7
        assert store.write_failures == 0


def test_a_flush_in_a_forked_child_writes_what_the_child_queued(tmp_path: Path) -> None:
    db = tmp_path / "flight.db"
    with recording(persistent=True, path=str(db)) as (provider, proc, _):
        with chrono.lap("parent", tracer_provider=provider):
            pass
        proc.force_flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for _ in range(3):
                    with chrono.lap("child", tracer_provider=provider):
                        pass
                ok = proc.force_flush(10_000) and _rows(db, "child") == 3
                code = 0 if ok else 3
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert _rows(db, "parent") == 1
