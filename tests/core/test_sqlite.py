"""SQLite across fork(): a child forked while another thread is inside a write transaction can write."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from otel_chronograph._sqlite import connect, transaction


def test_a_child_forked_during_a_write_transaction_can_write(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    setup = connect(db)
    setup.execute("CREATE TABLE t (x INTEGER)")
    inside = threading.Event()

    def writer() -> None:
        conn = connect(db)
        with transaction(conn, immediate=False):
            conn.execute("INSERT INTO t VALUES (0)")
            inside.set()
            conn.executemany("INSERT INTO t VALUES (?)", ((i,) for i in range(300_000)))

    thread = threading.Thread(target=writer)
    thread.start()
    assert inside.wait(10)
    pid = os.fork()  # waits until the writer's transaction has ended
    if pid == 0:  # the child: a fresh connection must get the write lock, not wait on a ghost
        code = 1
        try:
            conn = connect(db, busy_ms=3000)
            with transaction(conn):
                conn.execute("INSERT INTO t VALUES (-1)")
            code = 0
        finally:
            os._exit(code)
    thread.join()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert setup.execute("SELECT count(*) FROM t WHERE x = -1").fetchone()[0] == 1
