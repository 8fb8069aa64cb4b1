"""One SQLite helper for the durable stores (billing outbox, flight recorder): how a connection is
opened (WAL, busy timeout, synchronous), one transaction context manager, and per-thread connections
that are safe across ``fork()`` and at close.

Why per thread and per process: a sqlite3 connection must not be used by two threads at once nor
carried into a forked child, and closing a connection another thread is using crashed the
interpreter (a segfault in 3 of 5 runs of 16 threads making laps during shutdown). So each thread gets
its own, a forked child starts with none (the parent's are abandoned, never closed, in the child), and
``close()`` closes only the calling thread's connection; the others close with their threads.

Why transactions hold a fork gate: SQLite keeps per-process lock state for a file shared by every
connection in the process. A child forked while another thread is inside a write transaction inherits
that state ("this process holds the write lock") without the lock itself or the thread that would
release it, and its own writer then waits on the abandoned connection forever (seen: a gunicorn
--preload worker whose flight records never arrived). So ``fork()`` waits, bounded, until no
transaction is open in the process, and no new one begins until it is done.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

__all__ = ["ThreadConnections", "cli_errors", "connect", "describe", "storable", "transaction"]


def connect(path: str | Path, *, synchronous: str = "NORMAL", busy_ms: int = 10_000,
            read_only: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (explicit transactions), WAL unless read-only."""
    if read_only:
        uri = Path(path).resolve().as_uri()
        try:
            conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=busy_ms / 1000,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout={busy_ms}")
            conn.execute("PRAGMA schema_version").fetchone()
        except sqlite3.OperationalError as exc:
            if "unable to open" not in str(exc):
                raise
            # On a read-only filesystem SQLite cannot create the WAL index (-shm): nothing can change
            # the file there, so read it as immutable.
            conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None,
                                   check_same_thread=False)
        return conn
    conn = sqlite3.connect(str(path), timeout=busy_ms / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={busy_ms}")
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise sqlite3.OperationalError(f"{path}: cannot switch to WAL journal mode (got {mode})")
    conn.execute(f"PRAGMA synchronous={'FULL' if synchronous.upper() == 'FULL' else 'NORMAL'}")
    return conn


class _ForkGate:
    """Transactions pass in any number at once; ``fork()`` waits until none is open (bounded)."""

    #: A fork never waits longer than this for transactions to end (one stuck on a busy database).
    WAIT_S = 5.0

    def __init__(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._open = 0
        self._forking = False

    def enter(self) -> None:
        with self._cond:
            self._cond.wait_for(lambda: not self._forking, self.WAIT_S)
            self._open += 1

    def leave(self) -> None:
        with self._cond:
            self._open -= 1
            if self._open <= 0:
                self._cond.notify_all()

    def before_fork(self) -> None:
        self._cond.acquire()
        self._forking = True
        self._cond.wait_for(lambda: self._open <= 0, self.WAIT_S)
        # the condition's lock stays held across fork(): no transaction begins or ends meanwhile

    def after_fork_in_parent(self) -> None:
        self._forking = False
        self._cond.notify_all()
        self._cond.release()

    def after_fork_in_child(self) -> None:
        self.__init__()  # type: ignore[misc]  # the child has no thread inside a transaction


_gate = _ForkGate()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_gate.before_fork, after_in_parent=_gate.after_fork_in_parent,
                        after_in_child=_gate.after_fork_in_child)


@contextmanager
def transaction(conn: sqlite3.Connection, immediate: bool = True) -> Iterator[sqlite3.Connection]:
    """BEGIN [IMMEDIATE] ... COMMIT, ROLLBACK on any exception (BaseException included)."""
    _gate.enter()
    try:
        conn.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield conn
        except BaseException:
            with suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    finally:
        _gate.leave()


class ThreadConnections:
    """One connection per thread and per process, opened on first use by ``opener``."""

    def __init__(self, path: str | Path, *, synchronous: str = "NORMAL", busy_ms: int = 10_000,
                 read_only: bool = False) -> None:
        self.path = path
        self._kwargs = {"synchronous": synchronous, "busy_ms": busy_ms, "read_only": read_only}
        self._pid = os.getpid()
        self._local = threading.local()

    def get(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # a forked child: the parent's connections are not ours to use
            self._pid = os.getpid()
            self._local = threading.local()
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = connect(self.path, **self._kwargs)  # type: ignore[arg-type]
            self._local.conn = conn
        return conn

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end, never under them)."""
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is not None and self._pid == os.getpid():
            self._local.conn = None
            with suppress(sqlite3.Error):
                conn.close()


def storable(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """``row`` with text SQLite can take: a lone surrogate (a name decoded from hostile OTLP JSON) cannot
    be encoded as UTF-8, so such text is stored with it escaped (``\\udc80``) instead of failing."""
    return tuple(v.encode("utf-8", "backslashreplace").decode("utf-8") if isinstance(v, str) else v
                 for v in row)


def describe(exc: BaseException) -> str:
    """A sqlite3 error in the user's terms (one line)."""
    text = str(exc) or type(exc).__name__
    if "file is not a database" in text or "malformed" in text:
        return f"not a readable SQLite database (corrupted or another kind of file?): {text}"
    if "readonly" in text or "read-only" in text:
        return f"read-only: {text}"
    return text


@contextmanager
def cli_errors(path: str | Path) -> Iterator[None]:
    """For commands: a database error becomes one line naming the file (click's exit status 1)."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        import click

        raise click.ClickException(f"{path}: {describe(exc)}") from None
