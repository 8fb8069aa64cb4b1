"""Delivery of outbox rows through a :class:`Transport` (Stripe's is in ``_stripe``, imported only by
a process that delivers): claim due rows with a lease, send them, record the outcomes.

v1 sends one event per request, at most one request in flight per customer and meter (rows are grouped
so, one group per pool worker); v2 sends up to 100 events per request. Outcomes: ``delivered``;
``retry`` with exponential backoff and jitter (until ``max_attempts``); ``dead`` with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from .._config import MeterConfig
from .._worker import Worker
from ._outbox import Outbox, OutboxRow, now_ms

_T = TypeVar("_T")
_R = TypeVar("_R")

__all__ = ["DELIVERED", "MAX_AGE_MS", "Outcome", "Sender", "Transport"]

_log = logging.getLogger("otel_chronograph.billing")

MAX_AGE_MS = 35 * 86_400_000  # Stripe accepts meter events from the past 35 days
FUTURE_MS = 5 * 60_000  # ... and up to 5 minutes in the future


@dataclass(frozen=True, slots=True)
class Outcome:
    """What happened to one row: ``delivered``, ``retry`` or ``dead`` (with the reason)."""

    kind: str
    error: str | None = None


DELIVERED = Outcome("delivered")


class Transport(Protocol):
    """Where rows go (``_stripe.StripeTransport``; tests may bring their own)."""

    def send_v1(self, row: OutboxRow) -> Outcome: ...

    def send_v2(self, rows: Sequence[OutboxRow]) -> list[Outcome]: ...

    def close(self) -> None: ...


def _local_check(row: OutboxRow, now: int) -> str | None:
    if not row.customer:
        return "no customer"
    if row.ts_ms < now - MAX_AGE_MS:
        return "timestamp older than 35 days"
    if row.ts_ms > now + FUTURE_MS:
        return "timestamp more than 5 minutes in the future"
    if row.value < 0:
        return "negative value"
    return None


@dataclass
class Counters:
    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    rounds: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Sender:
    """Claims due rows with a lease and delivers them; runs in a background thread or on demand."""

    def __init__(self, outbox: Outbox, meter: MeterConfig, transport: Transport,
                 owner: str | None = None, rng: random.Random | None = None,
                 on_error: Callable[[str], None] | None = None) -> None:
        self.outbox = outbox
        self.meter = meter
        self.transport = transport
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.counters = Counters()
        self._rng = rng or random.Random()
        self._pool = self._new_pool()
        self._round_lock = threading.Lock()
        self._pause = threading.Event()  # never set: an interruptible-looking wait for drain()
        self._fresh = 0
        self._on_error = on_error
        self._last_purge = 0.0
        self._last_full = time.monotonic()
        self._drain_now = False
        self._born_ms = now_ms()
        self._leftovers = True  # rows an earlier run left go out at once; fresh ones wait for a batch
        self._worker = Worker("chronograph-billing-sender", self._step, meter.flush_interval_s,
                              after_fork=self._after_fork)

    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(max_workers=self.meter.concurrency,
                                  thread_name_prefix="chronograph-billing")

    def _after_fork(self) -> None:
        # The child is another process: its own lease owner, a pool whose threads exist, fresh locks;
        # it delivers what is due (rows are in the shared outbox) once it has laps of its own.
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool = self._new_pool()
        self._round_lock = threading.Lock()
        self._pause = threading.Event()
        self._fresh = 0
        self._born_ms = now_ms()
        self._leftovers = True

    # -- public --------------------------------------------------------------------------------------

    def start(self) -> None:
        self._worker.wake()

    def notify(self) -> None:
        """A row was added: wake the sender once a batch is ready (start it in a forked child)."""
        self._fresh += 1
        if self._fresh >= self.meter.batch_size or not self._worker.started:
            self._worker.wake()

    def drain(self, timeout_s: float, include_leased: bool = False) -> bool:
        """Deliver everything claimable (fresh and retry rows) until none is left or time runs out.

        True when no pending row is left that this sender could claim. Other owners' live leases are
        left alone (they are theirs to deliver) unless ``include_leased``: then wait for them to be
        delivered or to expire (a crashed owner's) and take them over."""
        deadline = time.monotonic() + timeout_s
        while True:
            claimed = self.round()
            if self.remaining(include_leased) == 0:
                return True
            now = time.monotonic()
            if now >= deadline:
                return False
            if claimed:
                continue
            nxt = self.outbox.next_due_ms(include_fresh=True)
            wait = deadline - now if nxt is None else min(deadline - now, max(nxt - now_ms(), 5) / 1000)
            self._pause.wait(wait)

    def shutdown(self, timeout_s: float | None = None, include_leased: bool = False) -> bool:
        """Stop the background loop, then drain for at most ``timeout_s`` (``meter.shutdown_timeout_s``)."""
        budget = self.meter.shutdown_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + budget
        self._worker.stop(max(deadline - time.monotonic(), 0.0))
        ok = False
        try:
            left = max(deadline - time.monotonic(), 0.0)
            ok = self.drain(left, include_leased) if budget > 0 else self.remaining(include_leased) == 0
        finally:
            try:
                self.outbox.release(self.owner)
            except Exception:
                _log.warning("chronograph billing: could not release leases", exc_info=True)
            self._pool.shutdown(wait=False, cancel_futures=True)
            self.transport.close()
        return ok

    def remaining(self, include_leased: bool = False) -> int:
        """Pending rows this sender could still claim (not held by another owner's live lease)."""
        return self.outbox.depth() if include_leased else self.outbox.claimable(self.owner)

    # -- the loop ------------------------------------------------------------------------------------

    def _step(self) -> float | None:
        """One turn of the delivery loop; returns the seconds until the next one is needed."""
        interval = self.meter.flush_interval_s
        try:
            if self._leftovers:
                self._leftovers = self.round(created_before=self._born_ms) >= self._claim_limit()
            batch_due = self._drain_now or self._fresh >= self.meter.batch_size or \
                time.monotonic() - self._last_full >= interval
            if batch_due and not self._leftovers:
                self._fresh = 0
                self._last_full = time.monotonic()
                claimed = self.round()
                self._drain_now = claimed >= self._claim_limit()
            elif not self._leftovers:
                self.round(retries_only=True)
            self._maybe_purge()
        except Exception as exc:  # the database is busy or gone: keep the loop alive
            self._note_error(f"outbox: {type(exc).__name__}: {exc}")
            self._drain_now = False
            return 1.0
        if self._drain_now or self._leftovers:
            return 0.0
        wait = max(interval - (time.monotonic() - self._last_full), 0.0)
        try:
            nxt = self.outbox.next_due_ms(include_fresh=False)
        except Exception:
            nxt = None
        if nxt is not None:
            wait = min(wait, max(nxt - now_ms(), 5) / 1000)
        return wait

    def _maybe_purge(self) -> None:
        if time.monotonic() - self._last_purge > 3600:
            self._last_purge = time.monotonic()
            self.outbox.purge_delivered(self.meter.retention_days)

    def _map(self, fn: Callable[[_T], _R], items: list[_T]) -> list[_R]:
        """``fn`` over ``items`` on the pool; in the calling thread when the pool cannot take work.

        At interpreter exit ``concurrent.futures`` refuses new work before atexit handlers run, and
        the final drain runs from one: it must still deliver."""
        try:
            return list(self._pool.map(fn, items))
        except RuntimeError:
            return [fn(item) for item in items]

    def _claim_limit(self) -> int:
        return self.meter.batch_size * self.meter.concurrency

    def round(self, retries_only: bool = False, created_before: int | None = None) -> int:
        """Claim one lot of due rows and deliver it. Returns how many rows were claimed."""
        with self._round_lock:
            rows = self.outbox.claim(self.owner, self._claim_limit(), self.meter.lease_s,
                                     retries_only=retries_only, created_before=created_before)
            if not rows:
                return 0
            self.counters.rounds += 1
            results = self._deliver(rows)
            self._record(rows, results)
            return len(rows)

    def _deliver(self, rows: list[OutboxRow]) -> dict[str, Outcome]:
        now = now_ms()
        results: dict[str, Outcome] = {}
        sendable: list[OutboxRow] = []
        for r in rows:
            reason = _local_check(r, now)
            if reason is None:
                sendable.append(r)
            else:
                results[r.identifier] = Outcome("dead", reason)
        if self.meter.api == "v2":
            size = min(self.meter.batch_size, 100)
            chunks = [sendable[i:i + size] for i in range(0, len(sendable), size)]
            for chunk, outs in zip(chunks, self._map(self.transport.send_v2, chunks), strict=True):
                for r, o in zip(chunk, outs, strict=True):
                    results[r.identifier] = o
        else:
            groups: dict[tuple[str | None, str], list[OutboxRow]] = defaultdict(list)
            for r in sendable:
                groups[(r.customer, r.event_name)].append(r)
            for part in self._map(self._send_group, list(groups.values())):
                results.update(part)
        return results

    def _send_group(self, rows: list[OutboxRow]) -> dict[str, Outcome]:
        """One customer+meter: strictly one request at a time; stop the group on a retryable error."""
        out: dict[str, Outcome] = {}
        failed: Outcome | None = None
        for r in rows:
            if failed is not None:
                out[r.identifier] = failed
                continue
            o = self.transport.send_v1(r)
            out[r.identifier] = o
            if o.kind == "retry":
                failed = Outcome("retry", o.error)
        return out

    def _backoff_ms(self, attempts: int) -> int:
        delay = min(self.meter.retry_max_s, self.meter.retry_base_s * (2 ** min(attempts, 30)))
        return int(delay * self._rng.uniform(0.5, 1.0) * 1000)

    def _record(self, rows: list[OutboxRow], results: dict[str, Outcome]) -> None:
        delivered: list[str] = []
        retry: list[tuple[str, int, str]] = []
        dead: list[tuple[str, str]] = []
        now = now_ms()
        last_error: str | None = None
        for r in rows:
            o = results[r.identifier]
            if o.kind == "delivered":
                delivered.append(r.identifier)
            elif o.kind == "dead":
                dead.append((r.identifier, o.error or "rejected"))
                last_error = o.error
            else:
                err = o.error or "unknown error"
                last_error = err
                if r.attempts + 1 >= self.meter.max_attempts:
                    dead.append((r.identifier, f"gave up after {r.attempts + 1} attempts: {err}"))
                else:
                    retry.append((r.identifier, now + self._backoff_ms(r.attempts), err))
        self.outbox.mark_delivered(delivered)
        self.outbox.mark_retry(retry, self.owner)
        self.outbox.mark_dead(dead)
        with self.counters.lock:
            self.counters.delivered += len(delivered)
            self.counters.retried += len(retry)
            self.counters.dead_lettered += len(dead)
        if last_error is not None:
            self._note_error(last_error)

    def _note_error(self, message: str) -> None:
        self.counters.last_error = message
        with contextlib.suppress(Exception):
            self.outbox.set_last_error(message)
        if self._on_error is not None:
            self._on_error(message)
