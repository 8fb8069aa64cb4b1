"""Where flight records live: an in-memory LRU and, optionally, SQLite (WAL) with a retention purge.

The store keeps :class:`~otel_chronograph.Lap` objects (records are built on read, so recording costs
the application almost nothing). SQLite writes happen in batches on the store's own writer thread; a
cleanup thread purges records older than ``retention_hours``. Per-command history (median, p95) is kept
incrementally: from the LRU in memory-only mode, from the database (every process writing it) when
persistent.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .._lap import Lap
from .._sqlite import connect, describe, transaction
from .._stats import History, compare_to_history
from .._worker import Worker
from ._record import FlightRecord, decode_lap, encode_lap

__all__ = ["FlightStore", "History"]

_log = logging.getLogger("otel_chronograph.recorder")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS flight_records (
    seq INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    trace_id TEXT NOT NULL,
    command TEXT NOT NULL,
    status TEXT NOT NULL,
    error INTEGER NOT NULL,
    session_id TEXT,
    start_ns INTEGER NOT NULL,
    lap_ms REAL NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS flight_records_trace ON flight_records (trace_id);
CREATE INDEX IF NOT EXISTS flight_records_start ON flight_records (start_ns);
CREATE TABLE IF NOT EXISTS flight_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO flight_meta (key, value) VALUES ('purge_generation', 0);
"""
_INSERT = ("INSERT OR IGNORE INTO flight_records (request_id, trace_id, command, status, error, session_id,"
           " start_ns, lap_ms, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
_NS_PER_HOUR = 3600 * 1_000_000_000


class FlightStore:
    """In-memory LRU of the last ``max_records`` laps, plus SQLite at ``path`` when given.

    Thread-safe. ``add`` is cheap (the lap goes in the LRU and a write queue); ``flush`` writes what is
    queued; ``close`` flushes and stops the background threads.
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        max_records: int = 1000,
        retention_hours: float = 24.0,
        anomaly_factor: float = 10.0,
        min_history: int = 3,
        batch_size: int = 256,
        flush_interval_s: float = 0.25,
        cleanup_interval_s: float | None = None,
        create: bool = True,
        read_only: bool = False,
    ) -> None:
        if max_records < 1:
            raise ValueError("max_records must be at least 1")
        self.path = None if path is None else Path(path)
        self.max_records = max_records
        self.retention_hours = retention_hours
        self.anomaly_factor = anomaly_factor
        self.min_history = min_history
        self.batch_size = max(batch_size, 1)
        self.flush_interval_s = flush_interval_s
        self.cleanup_interval_s = cleanup_interval_s
        self.write_failures = 0
        self.dropped = 0
        self._lock = threading.Lock()
        self._laps: OrderedDict[str, Lap] = OrderedDict()
        self._by_trace: dict[str, str] = {}
        self._history = History()
        self._pending: deque[Lap] = deque()
        self._writer = Worker("chronograph-recorder", self._write_step, flush_interval_s,
                              after_fork=self._after_fork)
        self._cleaner: Worker | None = None
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._wconn: sqlite3.Connection | None = None
        self._rconn: sqlite3.Connection | None = None
        self._synced_seq = 0
        self._purge_gen = -1
        self._closed = False
        self._reopen = False
        self.read_only = read_only
        if self.path is not None:
            if (not create or read_only) and not self.path.exists():
                raise FileNotFoundError(f"no flight recorder database at {self.path}")
            if read_only:
                self._reader().execute("SELECT count(*) FROM flight_records LIMIT 1").fetchone()
            else:
                self._wconn = self._connect()
                self._wconn.executescript(_SCHEMA)

    @property
    def persistent(self) -> bool:
        return self.path is not None

    # -- connections --------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        return connect(self.path)

    def _after_fork(self) -> None:
        """In a forked child: the parent's connections and queued laps are the parent's."""
        self._pending.clear()
        self._wlock = threading.Lock()
        self._rlock = threading.Lock()
        self._lock = threading.Lock()
        if self._wconn is not None:
            self._wconn = None  # abandoned, never used or closed here; reopened on the next write
            self._reopen = True
        self._rconn = None

    def _reader(self) -> sqlite3.Connection:
        if self._rconn is None:
            assert self.path is not None
            self._rconn = connect(self.path, read_only=True) if self.read_only else self._connect()
        return self._rconn

    def check(self) -> str | None:
        """None when the database answers a read; else why not (for a health endpoint that tells the
        truth: a corrupted file must not look healthy)."""
        if self.path is None:
            return None
        try:  # a fresh connection: a long-lived one would answer from its page cache
            conn = connect(self.path, read_only=True)
            try:
                conn.execute("SELECT count(*) FROM flight_records").fetchone()
            finally:
                conn.close()
        except sqlite3.Error as exc:
            return describe(exc)
        return None

    # -- writing ------------------------------------------------------------------------------

    def add(self, lap: Lap) -> None:
        """Record a lap: into the LRU now, into SQLite with the next batch."""
        self._remember(lap)
        if self.path is None or self._closed:
            return
        self._pending.append(lap)
        if not self._writer.started:
            self._writer.start()  # writes every flush_interval_s, or at once when a batch is full
        if len(self._pending) >= self.batch_size:
            self._writer.wake()

    def add_many(self, laps: Iterable[Lap]) -> int:
        """Record many laps at once, written to SQLite in one transaction now (bulk loads, imports)."""
        laps = list(laps)
        for lap in laps:
            self._remember(lap)
        if self.path is not None:
            with self._wlock:
                self._insert(laps)
        return len(laps)

    def _remember(self, lap: Lap) -> None:
        with self._lock:
            laps = self._laps
            old = laps.pop(lap.request_id, None)
            laps[lap.request_id] = lap
            self._by_trace[lap.trace_id] = lap.request_id
            if self.path is None:
                if old is not None:
                    self._history.remove(old.command, old.lap_ms)
                self._history.add(lap.command, lap.lap_ms)
            while len(laps) > self.max_records:
                _, gone = laps.popitem(last=False)
                self._forget(gone)

    def _forget(self, lap: Lap) -> None:
        if self._by_trace.get(lap.trace_id) == lap.request_id:
            del self._by_trace[lap.trace_id]
        if self.path is None:
            self._history.remove(lap.command, lap.lap_ms)

    def _insert(self, laps: list[Lap]) -> None:
        if not laps:
            return
        rows = [(lap.request_id, lap.trace_id, lap.command, lap.status, int(lap.error), lap.session_id,
                 lap.start_ns, lap.lap_ms, encode_lap(lap)) for lap in laps]
        conn = self._wconn
        assert conn is not None
        with transaction(conn, immediate=False):
            conn.executemany(_INSERT, rows)

    def _write_pending(self) -> None:
        if self._wconn is None:
            if not self._reopen:
                return
            try:
                self._wconn = self._connect()
                self._reopen = False
            except sqlite3.Error:
                self.write_failures += 1
                return
        with self._wlock:
            batch: list[Lap] = []
            pending = self._pending
            while pending:
                batch.append(pending.popleft())
            if not batch:
                return
            try:
                self._insert(batch)
            except sqlite3.Error:
                self.write_failures += 1
                if self.write_failures == 1:
                    _log.warning("flight recorder: cannot write %d records to %s; retrying later",
                                 len(batch), self.path, exc_info=True)
                if len(pending) + len(batch) <= 100_000:
                    pending.extendleft(reversed(batch))
                else:
                    self.dropped += len(batch)

    def _write_step(self) -> None:
        self._write_pending()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write everything queued so far to SQLite (no-op in memory-only mode)."""
        if self._wconn is None:
            return True
        if not self._wlock.acquire(timeout=max(timeout_s, 0.0)):
            return False
        self._wlock.release()
        self._write_pending()
        return not self._pending

    # -- retention ----------------------------------------------------------------------------

    def purge(self, now_ns: int | None = None) -> int:
        """Delete records older than ``retention_hours`` (0 keeps everything). Returns how many went."""
        if self.retention_hours <= 0:
            return 0
        now = time.time_ns() if now_ns is None else now_ns
        cutoff = now - int(self.retention_hours * _NS_PER_HOUR)
        removed = 0
        with self._lock:
            stale = [rid for rid, lap in self._laps.items() if lap.start_ns < cutoff]
            for rid in stale:
                self._forget(self._laps.pop(rid))
            removed = len(stale)
        if self._wconn is not None:
            self.flush()
            with self._wlock, transaction(self._wconn) as conn:
                cur = conn.execute("DELETE FROM flight_records WHERE start_ns < ?", (cutoff,))
                removed = max(removed, cur.rowcount)
                if cur.rowcount:
                    conn.execute("UPDATE flight_meta SET value = value + 1 "
                                 "WHERE key = 'purge_generation'")
        return removed

    def start_cleanup(self, interval_s: float | None = None) -> None:
        """Purge now and then every ``interval_s`` (default: hourly, or sooner for short retentions)."""
        if self._cleaner is not None or self.retention_hours <= 0:
            return
        if interval_s is None:
            interval_s = self.cleanup_interval_s or min(3600.0, max(self.retention_hours * 3600 / 24, 1.0))
        self._cleaner = Worker("chronograph-recorder-cleanup", self._purge_step, interval_s)
        self._cleaner.wake()  # purge now

    def _purge_step(self) -> None:
        try:
            self.purge()
        except Exception:
            _log.warning("flight recorder: retention purge failed", exc_info=True)

    def close(self) -> None:
        """Flush, stop the background threads and close the database."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        for worker in (self._writer, self._cleaner):
            if worker is not None:
                worker.stop(10)
        self._write_pending()
        with self._wlock:
            if self._wconn is not None:
                self._wconn.close()
                self._wconn = None
        with self._rlock:
            if self._rconn is not None:
                self._rconn.close()
                self._rconn = None

    def __enter__(self) -> FlightStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        if self.path is None:
            with self._lock:
                return len(self._laps)
        return self.count()

    def count(self) -> int:
        """Records held: the LRU in memory-only mode, else the database (plus unwritten ones)."""
        if self.path is None:
            return len(self)
        with self._rlock:
            (n,) = self._reader().execute("SELECT count(*) FROM flight_records").fetchone()
        return int(n) + len(self._pending)

    def _db_lap(self, sql: str, args: tuple[Any, ...]) -> Lap | None:
        if self.path is None:
            return None
        with self._rlock:
            row = self._reader().execute(sql, args).fetchone()
        if row is None:
            return None
        try:
            return decode_lap(row[0])
        except ValueError:
            _log.warning("flight recorder: unreadable record in %s", self.path, exc_info=True)
            return None

    def get_lap(self, ident: str) -> Lap | None:
        """The lap by request id (``req_…``) or trace id (the newest lap of that trace)."""
        ident = ident.strip()
        with self._lock:
            rid = ident if ident in self._laps else self._by_trace.get(ident.lower())
            if rid is not None and rid in self._laps:
                self._laps.move_to_end(rid)
                return self._laps[rid]
        if self.path is None:
            return None
        lap = None
        if ident.startswith("req_"):
            lap = self._db_lap("SELECT data FROM flight_records WHERE request_id = ?", (ident,))
        if lap is None and len(ident) == 32:
            lap = self._db_lap("SELECT data FROM flight_records WHERE trace_id = ? "
                               "ORDER BY start_ns DESC LIMIT 1", (ident.lower(),))
        return lap

    def get(self, ident: str) -> FlightRecord | None:
        """The flight record by request id or trace id, or None."""
        lap = self.get_lap(ident)
        return None if lap is None else FlightRecord.from_lap(lap)

    def recent_laps(self, n: int = 10, command: str | None = None, status: str | None = None) -> list[Lap]:
        """The newest ``n`` laps (by start time), optionally of one command and/or status."""
        if n <= 0:
            return []

        def keep(lap: Lap) -> bool:
            return (command is None or lap.command == command) and (status is None or lap.status == status)

        with self._lock:
            found = {lap.request_id: lap for lap in self._laps.values() if keep(lap)}
        if self.path is not None:
            where, args = [], []
            if command is not None:
                where.append("command = ?")
                args.append(command)
            if status is not None:
                where.append("status = ?")
                args.append(status)
            sql = ("SELECT data FROM flight_records" + (" WHERE " + " AND ".join(where) if where else "")
                   + " ORDER BY start_ns DESC LIMIT ?")
            with self._rlock:
                rows = self._reader().execute(sql, (*args, n)).fetchall()
            for (data,) in rows:
                try:
                    lap = decode_lap(data)
                except ValueError:
                    continue
                found.setdefault(lap.request_id, lap)
        laps = sorted(found.values(), key=lambda lap: lap.start_ns, reverse=True)
        return laps[:n]

    def recent(self, n: int = 10, command: str | None = None, status: str | None = None
               ) -> list[FlightRecord]:
        return [FlightRecord.from_lap(lap) for lap in self.recent_laps(n, command, status)]

    # -- history ------------------------------------------------------------------------------

    def _sync_history(self) -> None:
        if self.path is None:
            return
        with self._rlock:
            conn = self._reader()
            (gen,) = conn.execute(
                "SELECT value FROM flight_meta WHERE key = 'purge_generation'").fetchone()
            if gen != self._purge_gen:
                by_command: dict[str, list[float]] = {}
                last = 0
                for seq, command, lap_ms in conn.execute(
                        "SELECT seq, command, lap_ms FROM flight_records"):
                    by_command.setdefault(command, []).append(lap_ms)
                    last = max(last, seq)
                with self._lock:
                    self._history.replace(by_command)
                self._purge_gen, self._synced_seq = gen, last
                return
            rows = conn.execute("SELECT seq, command, lap_ms FROM flight_records WHERE seq > ? "
                                "ORDER BY seq", (self._synced_seq,)).fetchall()
            if rows:
                with self._lock:
                    for _, command, lap_ms in rows:
                        self._history.add(command, lap_ms)
                self._synced_seq = rows[-1][0]

    def history(self, command: str) -> tuple[int, float, float]:
        """(count, median ms, p95 ms) of the command's laps in the store."""
        self._sync_history()
        with self._lock:
            return self._history.stats(command)

    def compare(self, lap: Lap | FlightRecord) -> dict[str, Any]:
        """How this lap compares with its command's history: median, p95, ratio and the anomaly flag
        (lap time at least ``anomaly_factor`` × the median, given ``min_history`` laps)."""
        count, median, p95 = self.history(lap.command)
        return compare_to_history(lap.lap_ms, count, median, p95, self.anomaly_factor, self.min_history)

    def commands(self) -> list[str]:
        self._sync_history()
        with self._lock:
            return self._history.commands()
