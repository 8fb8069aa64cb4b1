"""The durable usage outbox: one SQLite file (WAL) shared by every process that bills into it.

Each completed lap becomes one row keyed by its ``request_id`` (Stripe's meter event ``identifier``),
committed on the lap's path before ``lap.telemetry`` is handed back. Rows move

    pending --(delivered / Stripe says "already exists")--> delivered   (kept as a ledger, with retention)
    pending --(permanent error, or too many attempts)-----> dead        (with the reason)
    (zero value with ``value: cost_micros``) ------------> skipped     (nothing to bill; counted in reports)

Senders *claim* due pending rows with a lease (owner + expiry) in one ``BEGIN IMMEDIATE`` transaction,
so several processes sharing the file never hold the same row at once; a crashed owner's lease simply
expires. Delivery is at-least-once towards Stripe and idempotent there (same identifier), which together
with the commit-before-telemetry rule gives exactly-once billing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from .._sqlite import ThreadConnections, storable, transaction

_NOTE_BYTES = 512

__all__ = ["Outbox", "OutboxRow", "OutboxStatus", "UsageRecord", "now_ms"]

PENDING, DELIVERED, DEAD, SKIPPED = "pending", "delivered", "dead", "skipped"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS usage (
    identifier      TEXT PRIMARY KEY,
    event_name      TEXT NOT NULL,
    customer        TEXT,
    value           INTEGER NOT NULL,
    ts_ms           INTEGER NOT NULL,
    command         TEXT NOT NULL,
    tier            TEXT NOT NULL,
    cost            TEXT NOT NULL,
    lap_ms          REAL NOT NULL,
    score           REAL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL DEFAULT 0,
    lease_owner     TEXT,
    lease_until_ms  INTEGER NOT NULL DEFAULT 0,
    last_error      TEXT,
    created_ms      INTEGER NOT NULL,
    done_ms         INTEGER
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS usage_due ON usage (state, next_attempt_ms);
CREATE INDEX IF NOT EXISTS usage_ts ON usage (ts_ms);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT, at_ms INTEGER) WITHOUT ROWID;
"""

_INSERT = ("INSERT OR IGNORE INTO usage (identifier, event_name, customer, value, ts_ms, command, tier, cost,"
           " lap_ms, score, state, last_error, created_ms, done_ms) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class UsageRecord:
    """What the sink writes for one lap."""

    identifier: str
    event_name: str
    customer: str | None
    value: int
    ts_ms: int
    command: str
    tier: str
    cost: Decimal
    lap_ms: float
    score: float | None
    state: str = PENDING
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """A claimed pending row, as the sender sees it."""

    identifier: str
    event_name: str
    customer: str | None
    value: int
    ts_ms: int
    attempts: int


@dataclass(frozen=True, slots=True)
class OutboxStatus:
    pending: int
    due: int
    delivered: int
    dead: int
    skipped: int
    oldest_pending_age_s: float | None
    last_error: str | None
    last_error_ms: int | None
    dead_reasons: dict[str, int]


class Outbox:
    """Thread- and fork-safe access to the outbox file (see :mod:`otel_chronograph._sqlite`).

    Same life cycle as the flight recorder's ``FlightStore``: ``read_only`` never creates the file (and
    works on a read-only or full disk); ``close()`` (or ``with``) closes this thread's connection."""

    def __init__(self, path: str | os.PathLike[str], synchronous: str = "normal",
                 busy_timeout_ms: int = 10_000, read_only: bool = False) -> None:
        self.path = str(path)
        self.read_only = read_only
        if read_only and not os.path.exists(self.path):
            raise FileNotFoundError(f"no outbox at {self.path}")
        if not read_only:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._conns = ThreadConnections(self.path, synchronous=synchronous, busy_ms=busy_timeout_ms,
                                        read_only=read_only)
        if not read_only:
            self._conn().executescript(_SCHEMA)
            self._reserve_note()

    # -- connections -------------------------------------------------------------------------------

    def _conn(self) -> sqlite3.Connection:
        return self._conns.get()

    def _write(self, conn: sqlite3.Connection) -> AbstractContextManager[sqlite3.Connection]:
        return transaction(conn)

    def close(self) -> None:
        """Close this thread's connection. Other threads may still be committing rows (a lap ending
        during shutdown): their connections are never closed under them, so those rows are kept."""
        self._conns.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- rows that could not be committed (disk full) ------------------------------------------------
    # A full disk takes SQLite with it, so the count of usage rows a running process holds in memory
    # goes to a small side file whose blocks were allocated at start-up: rewritten in place, it needs no
    # new space. `chronograph billing status` reads it.

    @property
    def note_path(self) -> str:
        return self.path + "-uncommitted"

    def _reserve_note(self) -> None:
        with suppress(OSError):
            if not os.path.exists(self.note_path):
                with open(self.note_path, "wb") as f:
                    f.write(b" " * _NOTE_BYTES)

    def note_uncommitted(self, count: int, reason: str | None) -> None:
        """Record how many rows this process holds uncommitted (0 clears it). Never raises."""
        body = json.dumps({"count": count, "pid": os.getpid(), "at_ms": now_ms(),
                           "reason": (reason or "")[:200]}).encode() if count else b""
        with suppress(OSError):
            fd = os.open(self.note_path, os.O_WRONLY)
            try:
                os.pwrite(fd, body.ljust(_NOTE_BYTES)[:_NOTE_BYTES], 0)
            finally:
                os.close(fd)

    def uncommitted(self) -> dict[str, Any] | None:
        """What a running process last noted as uncommitted, or None."""
        try:
            with open(self.note_path, "rb") as f:
                text = f.read(_NOTE_BYTES).strip()
            note = json.loads(text) if text else None
        except (OSError, ValueError):
            return None
        return note if isinstance(note, dict) and note.get("count") else None

    # -- the lap's path ----------------------------------------------------------------------------

    def add(self, rec: UsageRecord) -> bool:
        """Commit one usage row (autocommit: a single INSERT is its own transaction). False if known."""
        now = now_ms()
        row = (rec.identifier, rec.event_name, rec.customer, rec.value, rec.ts_ms, rec.command, rec.tier,
               format(rec.cost, "f"), rec.lap_ms, rec.score, rec.state, rec.reason, now,
               None if rec.state == PENDING else now)
        try:
            cur = self._conn().execute(_INSERT, row)
        except UnicodeEncodeError:  # a lone surrogate in a customer or command: stored escaped
            cur = self._conn().execute(_INSERT, storable(row))
        return cur.rowcount == 1

    # -- the sender --------------------------------------------------------------------------------

    def claim(self, owner: str, limit: int, lease_s: float, now: int | None = None,
              retries_only: bool = False, created_before: int | None = None) -> list[OutboxRow]:
        """Lease up to ``limit`` due pending rows to ``owner`` (oldest first)."""
        t = now_ms() if now is None else now
        conn = self._conn()
        extra = " AND attempts>0" if retries_only else ""
        args: tuple[int, ...] = (t, t)
        if created_before is not None:
            extra += " AND created_ms<?"
            args += (created_before,)
        with self._write(conn):
            rows = conn.execute(
                "SELECT identifier, event_name, customer, value, ts_ms, attempts FROM usage"
                " WHERE state='pending' AND next_attempt_ms<=? AND lease_until_ms<=?" + extra +
                " ORDER BY next_attempt_ms, created_ms LIMIT ?", (*args, limit)).fetchall()
            if rows:
                until = t + int(lease_s * 1000)
                conn.executemany("UPDATE usage SET lease_owner=?, lease_until_ms=? WHERE identifier=?",
                                 [(owner, until, r[0]) for r in rows])
        return [OutboxRow(*r) for r in rows]

    def mark_delivered(self, identifiers: Sequence[str]) -> int:
        """Delivered is final, whoever held the lease (Stripe dedups by identifier)."""
        if not identifiers:
            return 0
        t = now_ms()
        conn = self._conn()
        with self._write(conn):
            cur = conn.executemany(
                "UPDATE usage SET state='delivered', done_ms=?, lease_owner=NULL, lease_until_ms=0,"
                " attempts=attempts+1 WHERE identifier=? AND state='pending'",
                [(t, i) for i in identifiers])
        return cur.rowcount

    def mark_retry(self, items: Iterable[tuple[str, int, str]], owner: str) -> None:
        """(identifier, next_attempt_ms, error): back to pending with a backoff; lease released."""
        conn = self._conn()
        with self._write(conn):
            conn.executemany(
                "UPDATE usage SET attempts=attempts+1, next_attempt_ms=?, last_error=?, lease_owner=NULL,"
                " lease_until_ms=0 WHERE identifier=? AND state='pending' AND lease_owner=?",
                [(nxt, err, ident, owner) for ident, nxt, err in items])

    def mark_dead(self, items: Iterable[tuple[str, str]]) -> None:
        """(identifier, reason): dead-letter, visible in ``billing status``."""
        t = now_ms()
        conn = self._conn()
        with self._write(conn):
            conn.executemany(
                "UPDATE usage SET state='dead', attempts=attempts+1, last_error=?, done_ms=?,"
                " lease_owner=NULL, lease_until_ms=0 WHERE identifier=? AND state='pending'",
                [(reason, t, ident) for ident, reason in items])

    def release(self, owner: str) -> None:
        """Give up this owner's leases (clean shutdown) so the next start picks them up at once."""
        conn = self._conn()
        with self._write(conn):
            conn.execute("UPDATE usage SET lease_owner=NULL, lease_until_ms=0 WHERE lease_owner=?"
                         " AND state='pending'", (owner,))

    def set_last_error(self, message: str) -> None:
        conn = self._conn()
        with self._write(conn):
            conn.execute("INSERT OR REPLACE INTO kv (key, value, at_ms) VALUES ('last_error', ?, ?)",
                         (message, now_ms()))

    def retry_dead(self, reason_like: str | None = None) -> int:
        conn = self._conn()
        with self._write(conn):
            sql = ("UPDATE usage SET state='pending', attempts=0, next_attempt_ms=0, done_ms=NULL,"
                   " lease_owner=NULL, lease_until_ms=0 WHERE state='dead'")
            args: tuple[Any, ...] = ()
            if reason_like:
                sql += " AND last_error LIKE ?"
                args = (f"%{reason_like}%",)
            return conn.execute(sql, args).rowcount

    def purge_delivered(self, older_than_days: float) -> int:
        cutoff = now_ms() - int(older_than_days * 86_400_000)
        conn = self._conn()
        with self._write(conn):
            return conn.execute("DELETE FROM usage WHERE state IN ('delivered','skipped') AND done_ms<?",
                                (cutoff,)).rowcount

    # -- reading -----------------------------------------------------------------------------------

    def depth(self) -> int:
        return int(self._conn().execute("SELECT COUNT(*) FROM usage WHERE state='pending'").fetchone()[0])

    def due_count(self, now: int | None = None) -> int:
        t = now_ms() if now is None else now
        return int(self._conn().execute(
            "SELECT COUNT(*) FROM usage WHERE state='pending' AND next_attempt_ms<=?", (t,)).fetchone()[0])

    def claimable(self, owner: str) -> int:
        """Pending rows ``owner`` could claim: not held by another owner's live lease."""
        t = now_ms()
        return int(self._conn().execute(
            "SELECT COUNT(*) FROM usage WHERE state='pending' AND (lease_until_ms<=? OR lease_owner=?)",
            (t, owner)).fetchone()[0])

    def next_due_ms(self, include_fresh: bool) -> int | None:
        """When the next pending row becomes claimable (retries and leases only, unless
        ``include_fresh``), or None."""
        where = "" if include_fresh else " AND (attempts>0 OR lease_until_ms>0)"
        row = self._conn().execute(
            "SELECT MIN(MAX(next_attempt_ms, lease_until_ms)) FROM usage WHERE state='pending'" + where
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def oldest_pending_age_s(self) -> float:
        row = self._conn().execute("SELECT MIN(created_ms) FROM usage WHERE state='pending'").fetchone()
        return 0.0 if row[0] is None else max(now_ms() - int(row[0]), 0) / 1000

    def status(self) -> OutboxStatus:
        conn = self._conn()
        counts = dict(conn.execute("SELECT state, COUNT(*) FROM usage GROUP BY state").fetchall())
        oldest = conn.execute("SELECT MIN(created_ms) FROM usage WHERE state='pending'").fetchone()[0]
        err = conn.execute("SELECT value, at_ms FROM kv WHERE key='last_error'").fetchone()
        reasons = dict(conn.execute(
            "SELECT COALESCE(last_error, '?'), COUNT(*) FROM usage WHERE state='dead' GROUP BY 1"
            " ORDER BY 2 DESC").fetchall())
        return OutboxStatus(
            pending=counts.get(PENDING, 0), due=self.due_count(), delivered=counts.get(DELIVERED, 0),
            dead=counts.get(DEAD, 0), skipped=counts.get(SKIPPED, 0),
            oldest_pending_age_s=None if oldest is None else max(now_ms() - int(oldest), 0) / 1000,
            last_error=None if err is None else err[0], last_error_ms=None if err is None else err[1],
            dead_reasons=reasons)

    def state_of(self, identifier: str) -> tuple[str, int, str | None] | None:
        row = self._conn().execute("SELECT state, attempts, last_error FROM usage WHERE identifier=?",
                                   (identifier,)).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def identifiers(self, state: str | None = None) -> set[str]:
        if state is None:
            rows = self._conn().execute("SELECT identifier FROM usage").fetchall()
        else:
            rows = self._conn().execute("SELECT identifier FROM usage WHERE state=?", (state,)).fetchall()
        return {r[0] for r in rows}

    def ledger(self, from_ms: int | None, to_ms: int | None, customer: str | None
               ) -> list[tuple[Any, ...]]:
        """(customer, command, tier, state, cost, value, score, ts_ms) rows in the window."""
        sql = "SELECT customer, command, tier, state, cost, value, score, ts_ms FROM usage WHERE 1=1"
        args: list[Any] = []
        if from_ms is not None:
            sql += " AND ts_ms>=?"
            args.append(from_ms)
        if to_ms is not None:
            sql += " AND ts_ms<?"
            args.append(to_ms)
        if customer is not None:
            sql += " AND customer=?"
            args.append(customer)
        return list(self._conn().execute(sql + " ORDER BY ts_ms", args).fetchall())
