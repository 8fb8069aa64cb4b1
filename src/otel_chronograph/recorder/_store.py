"""Where flight records live: an in-memory LRU and, optionally, SQLite (WAL) with a retention purge.

The store keeps :class:`~otel_chronograph.Lap` objects (records are built on read, so recording costs
the application almost nothing), each bounded in size (:func:`~._record.bounded_lap`). SQLite writes
happen in batches on the store's own writer thread; a cleanup thread purges records older than
``retention_hours``. Both are fork-safe workers: in a child forked after the parent wrote, they restart
on the child's first lap, with connections of the child's own. Per-command history (median, p95) is
kept incrementally: from the LRU in memory-only mode, from the database (every process writing it)
when persistent.

Failures never reach the caller: records that cannot be written (a full disk) stay queued, bounded by
``max_pending``, and are retried; the failures, the records dropped beyond the bound or after
``close()``, and the records cut to size are counted (``write_failures``, ``dropped``, ``truncated``)
and each kind is logged once with its reason.
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
from .._pipeline import _Once
from .._sqlite import ThreadConnections, connect, describe, storable, transaction
from .._stats import History, compare_to_history
from .._worker import Worker
from ._record import FlightRecord, _within, bounded_lap, decode_lap, encode_lap

__all__ = ["MAX_PENDING", "FlightStore", "History"]

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
MAX_PENDING = 10_000  # records queued for SQLite while it cannot take them (a full disk); then dropped
_RETRY_S = 1.0  # after a failed write, the writer tries again this often


class FlightStore:
    """In-memory LRU of the last ``max_records`` laps, plus SQLite at ``path`` when given.

    Thread-safe. ``add`` is cheap (the lap goes in the LRU and a write queue); ``flush`` writes what is
    queued; ``close`` writes what is left and stops the background threads (reads still work after).
    Connections: one writer connection (under a lock), and one reader connection per thread, each
    closed only by its own thread (or with it), never under another thread's feet.
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
        max_pending: int = MAX_PENDING,
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
        self.max_pending = max(max_pending, self.batch_size)
        self.read_only = read_only
        self.write_failures = 0  # failed write transactions (each retried)
        self.dropped = 0  # records never written: beyond max_pending, or added after close()
        self.truncated = 0  # records cut to size (see _record.bounded_lap)
        self._log_once = _Once()  # each kind of failure logged once per store, with its reason
        self._lock = threading.Lock()  # the LRU, the history, the write queue and the closed flag
        self._laps: OrderedDict[str, Lap] = OrderedDict()
        self._by_trace: dict[str, str] = {}
        self._history = History()
        self._pending: deque[Lap] = deque()
        self._in_flight = 0
        self._closed = False
        self._writer = Worker("chronograph-recorder", self._write_step, flush_interval_s,
                              after_fork=self._after_fork)
        self._cleaner: Worker | None = None
        self._wlock = threading.Lock()
        self._wconn: sqlite3.Connection | None = None
        self._hlock = threading.Lock()  # the history's sync position
        self._synced_seq = 0
        self._purge_gen = -1
        self._readers: ThreadConnections | None = None
        if self.path is not None:
            if (not create or read_only) and not self.path.exists():
                raise FileNotFoundError(f"no flight recorder database at {self.path}")
            self._readers = ThreadConnections(self.path, read_only=read_only)
            if read_only:
                self._reader().execute("SELECT count(*) FROM flight_records LIMIT 1").fetchone()
            else:
                self._wconn = self._connect()
                self._wconn.executescript(_SCHEMA)

    @property
    def persistent(self) -> bool:
        return self.path is not None

    @property
    def pending(self) -> int:
        """Records not yet in SQLite: queued, or in the batch being written."""
        return len(self._pending) + self._in_flight

    # -- connections --------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        if self.path.parent != Path(""):
            self.path.parent.mkdir(parents=True, exist_ok=True)
        return connect(self.path)

    def _writer_conn(self) -> sqlite3.Connection:
        """The writer connection (call with ``_wlock`` held), opened again in a forked child."""
        conn = self._wconn
        if conn is None:
            conn = self._wconn = self._connect()
        return conn

    def _after_fork(self) -> None:
        """In a forked child: the parent's queued records and connections are the parent's (they are
        abandoned here, never used or closed); locks another thread held at fork() are made anew."""
        self._pending = deque()
        self._in_flight = 0
        self._lock = threading.Lock()
        self._wlock = threading.Lock()
        self._hlock = threading.Lock()
        self._wconn = None

    def _reader(self) -> sqlite3.Connection:
        assert self._readers is not None
        return self._readers.get()

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
        # The check alone first (one call less per lap): laps nearly always fit.
        bounded = lap if _within(lap) is None else bounded_lap(lap)
        lock = self._lock
        lock.acquire()  # not ``with``: that costs twice as much, and this runs for every lap
        try:
            if bounded is not lap:
                self.truncated += 1
            self._remember(bounded)
            if self.path is None:
                return
            drop = self._closed or len(self._pending) >= self.max_pending
            if drop:
                self.dropped += 1
            else:
                self._pending.append(bounded)
                queued = len(self._pending)
        finally:
            lock.release()
        if drop:
            self._note_dropped()
            return
        if not self._writer.started:
            self._start_workers()
        if queued >= self.batch_size:
            self._writer.wake()

    def _start_workers(self) -> None:
        """The writer starts with the first lap (again in a forked child), and the purge with it."""
        self._writer.start()
        if self._cleaner is not None:
            self._cleaner.start()

    def _note_dropped(self) -> None:
        if self._closed:
            self._log_once("closed", "flight recorder: records added after close() are "
                           "not written to %s (counted in chronograph.recorder.dropped)", self.path,
                           traceback=False)
        else:
            self._log_once("dropped", "flight recorder: more than %d records wait for %s; "
                           "dropping further ones (counted in chronograph.recorder.dropped)",
                           self.max_pending, self.path, traceback=False)

    def add_many(self, laps: Iterable[Lap]) -> int:
        """Record many laps at once, written to SQLite in one transaction now (bulk loads, imports)."""
        bounded = [bounded_lap(lap) for lap in laps]
        with self._lock:
            for lap in bounded:
                self._remember(lap)
        if self.path is not None:
            with self._wlock:
                self._insert(self._writer_conn(), bounded)
        return len(bounded)

    def _remember(self, lap: Lap) -> None:
        """Into the LRU (and the memory-only history); call with ``_lock`` held."""
        laps = self._laps
        rid = lap.request_id
        old = laps.pop(rid, None)
        laps[rid] = lap
        self._by_trace[lap.trace_id] = rid
        # Once full, each lap in takes the oldest out: _forget, with the history updated in one call.
        gone = laps.popitem(False)[1] if len(laps) > self.max_records else None  # False: the oldest
        if gone is not None:
            self._unindex(gone)
        if self.path is None:
            history = self._history
            if old is not None:
                history.remove(old.command, old.lap_ms)
            if gone is None:
                history.update(lap.command, lap.lap_ms, None, 0.0)
            else:
                history.update(lap.command, lap.lap_ms, gone.command, gone.lap_ms)
        while len(laps) > self.max_records:  # max_records lowered meanwhile
            self._forget(laps.popitem(last=False)[1])

    def _forget(self, lap: Lap) -> None:
        """A lap gone from the LRU: out of the trace index and the memory-only history."""
        self._unindex(lap)
        if self.path is None:
            self._history.remove(lap.command, lap.lap_ms)

    def _unindex(self, lap: Lap) -> None:
        by_trace = self._by_trace
        if by_trace.get(lap.trace_id) == lap.request_id:
            del by_trace[lap.trace_id]

    @staticmethod
    def _insert(conn: sqlite3.Connection, laps: list[Lap]) -> None:
        if not laps:
            return
        rows = [(lap.request_id, lap.trace_id, lap.command, lap.status, int(lap.error), lap.session_id,
                 lap.start_ns, lap.lap_ms, encode_lap(lap)) for lap in laps]
        try:
            with transaction(conn, immediate=False):
                conn.executemany(_INSERT, rows)
        except UnicodeEncodeError:  # a name with a lone surrogate (from OTLP JSON): stored escaped
            with transaction(conn, immediate=False):
                conn.executemany(_INSERT, [storable(row) for row in rows])

    def _write_pending(self) -> bool:
        """Write what is queued; True when nothing is left. A failed batch goes back to the queue's
        front (oldest first); beyond ``max_pending`` the oldest records are dropped, counted."""
        with self._wlock:
            pending = self._pending
            batch: list[Lap] = []
            while pending:
                batch.append(pending.popleft())
            if not batch:
                return True
            self._in_flight = len(batch)
            try:
                self._insert(self._writer_conn(), batch)
            except (sqlite3.Error, OSError) as exc:
                self._log_once("write", "flight recorder: cannot write %d records to %s (%s); keeping up "
                               "to %d queued and retrying (counted in chronograph.recorder.write_failures)",
                               len(batch), self.path, describe(exc), self.max_pending, traceback=False)
                with self._lock:
                    pending.extendleft(reversed(batch))
                    self._in_flight = 0
                    self.write_failures += 1
                    over = len(pending) - self.max_pending
                    for _ in range(max(over, 0)):
                        pending.popleft()
                    if over > 0:
                        self.dropped += over
                if over > 0:
                    self._note_dropped()
                return False
            self._in_flight = 0
            return not pending

    def _write_step(self) -> float | None:
        return None if self._write_pending() or not self.write_failures else _RETRY_S

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Write everything queued so far to SQLite (no-op in memory-only mode); False if some is left."""
        if self.path is None:
            return True
        if not self._wlock.acquire(timeout=max(timeout_s, 0.0)):
            return False
        self._wlock.release()
        return self._write_pending()

    # -- retention ----------------------------------------------------------------------------

    def purge(self, now_ns: int | None = None) -> int:
        """Delete records older than ``retention_hours`` (0 keeps everything). Returns how many went."""
        if self.retention_hours <= 0:
            return 0
        now = time.time_ns() if now_ns is None else now_ns
        cutoff = now - int(self.retention_hours * _NS_PER_HOUR)
        with self._lock:
            stale = [rid for rid, lap in self._laps.items() if lap.start_ns < cutoff]
            for rid in stale:
                self._forget(self._laps.pop(rid))
        removed = len(stale)
        if self.path is not None and not self.read_only and not self._closed:
            self.flush()
            with self._wlock, transaction(self._writer_conn()) as conn:
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
        except (sqlite3.Error, OSError) as exc:
            self._log_once("purge", "flight recorder: retention purge of %s failed (%s); retrying at the "
                           "next interval", self.path, describe(exc), traceback=False)

    def close(self) -> None:
        """Write what is queued, stop the background threads and close the writer connection.

        Records added afterwards stay readable in memory but are not written (counted in ``dropped``);
        reads keep working (each thread opens its reader again)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True  # from here on add() queues nothing: what is queued is all there is
        for worker in (self._writer, self._cleaner):
            if worker is not None:
                worker.stop(10)  # the writer's last step writes the queue
        self._write_pending()
        with self._wlock:
            left = len(self._pending)
            if left:
                self._pending.clear()
                with self._lock:
                    self.dropped += left
                _log.error("flight recorder: %d records could not be written to %s before close",
                           left, self.path)
            if self._wconn is not None:
                self._wconn.close()
                self._wconn = None
        if self._readers is not None:
            self._readers.close()

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
        (n,) = self._reader().execute("SELECT count(*) FROM flight_records").fetchone()
        return int(n) + len(self._pending)

    def _db_lap(self, sql: str, args: tuple[Any, ...]) -> Lap | None:
        if self.path is None:
            return None
        row = self._reader().execute(sql, storable(args)).fetchone()
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
            rows = self._reader().execute(sql, storable((*args, n))).fetchall()
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
        with self._hlock:
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
