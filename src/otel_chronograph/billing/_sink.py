"""The billing lap sink: one committed outbox row per lap, on the lap's path; delivery in the background."""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections import deque
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal

from opentelemetry.metrics import MeterProvider

from .._config import BillingConfig, ChronographConfig
from .._lap import Lap
from .._metrics import observe_counter, observe_gauge
from .._pipeline import log_once
from .._worker import Worker
from ._outbox import DEAD, PENDING, SKIPPED, Outbox, UsageRecord
from ._sender import Sender, StripeTransport, Transport

__all__ = ["BillingSink", "api_key_from", "usage_record"]

_log = logging.getLogger("otel_chronograph.billing")
_MICROS = Decimal(1_000_000)
MAX_UNCOMMITTED = 100_000  # usage rows held in memory while the outbox cannot commit (a few hundred B each)
NO_KEY = ("STRIPE_API_KEY is not set: usage is kept in the outbox {path} and not sent. "
          "Set STRIPE_API_KEY and run `chronograph billing flush` (or restart) to deliver it")


def api_key_from(environ: Mapping[str, str] | None = None) -> str | None:
    key = (os.environ if environ is None else environ).get("STRIPE_API_KEY", "").strip()
    return key or None


def cost_micros(cost: Decimal) -> int:
    """cost × 1,000,000 as an integer; exact for up to 6 decimals, half-even beyond."""
    return int((cost * _MICROS).to_integral_value(rounding=ROUND_HALF_EVEN))


def usage_record(lap: Lap, billing: BillingConfig) -> UsageRecord:
    """The outbox row for a lap: value per ``meter.value``; free laps and missing customers are decided here.

    - ``cost_micros`` with a zero value (free tier, zero rate): ``skipped`` — nothing to bill, kept in the
      ledger so reports count the request.
    - otherwise no customer: ``dead`` with reason "no customer" (visible in ``billing status``).
    """
    meter = billing.meter
    if meter.value == "cost_micros":
        value = cost_micros(lap.cost)
    elif meter.value == "requests":
        value = 1
    else:
        value = int(Decimal(repr(lap.lap_ms)).to_integral_value(rounding=ROUND_HALF_EVEN))
    state, reason = PENDING, None
    if meter.value == "cost_micros" and value == 0:
        state, reason = SKIPPED, "zero cost"
    elif not lap.customer:
        state, reason = DEAD, "no customer"
    return UsageRecord(
        identifier=lap.request_id, event_name=meter.event_name, customer=lap.customer or None, value=value,
        ts_ms=lap.timestamp, command=lap.command, tier=lap.tier, cost=lap.cost, lap_ms=lap.lap_ms,
        score=lap.score, state=state, reason=reason)


class BillingSink:
    """Non-deferred sink: ``sink(lap)`` commits the usage row (SQLite WAL) and returns; never raises."""

    __name__ = "billing"

    def __init__(self, config: ChronographConfig, meter_provider: MeterProvider | None = None, *,
                 environ: Mapping[str, str] | None = None, transport: Transport | None = None,
                 start: bool = True) -> None:
        self.billing = config.billing
        meter = self.billing.meter
        self.outbox = Outbox(meter.outbox, synchronous=meter.synchronous)
        self.write_failures = 0
        # Rows that could not be committed (disk full, I/O error): kept in order, retried, bounded.
        self._uncommitted: deque[UsageRecord] = deque()
        self.lost = 0
        self._reason: str | None = None
        self._commit_lock = threading.Lock()
        self._retry = Worker("chronograph-billing-retry", self._retry_step, 1.0,
                             after_fork=self._after_fork)
        self.no_customer = 0
        self.skipped = 0
        self._lock = threading.Lock()
        self.sender: Sender | None = None
        key = api_key_from(environ)
        if transport is None and key is not None and meter.delivery == "in_process":
            transport = StripeTransport(key, meter)
        if meter.delivery == "external" and transport is None:
            pass  # `chronograph billing deliver` delivers from this outbox; the app never talks to Stripe
        elif transport is None:
            message = NO_KEY.format(path=meter.outbox)
            _log.warning("chronograph billing: %s", message)
            self.outbox.set_last_error(message)
        else:
            self.sender = Sender(self.outbox, meter, transport)
            if start:
                self.sender.start()
        self._register_metrics(meter_provider)

    def _register_metrics(self, mp: MeterProvider | None) -> None:
        observe_gauge(mp, "chronograph.outbox.depth", lambda: float(self.outbox.depth()),
                      "Usage rows waiting in the billing outbox")
        observe_gauge(mp, "chronograph.outbox.oldest_age", self.outbox.oldest_pending_age_s,
                      "Age of the oldest pending usage row", unit="s")

        def counter(attr: str) -> list[tuple[float, dict[str, object]]]:
            s = self.sender
            return [(float(getattr(s.counters, attr) if s else 0), {})]

        observe_gauge(mp, "chronograph.outbox.uncommitted", lambda: float(len(self._uncommitted)),
                      "Usage rows held in memory because the outbox could not commit them (disk full)",
                      unit="{row}")
        observe_counter(mp, "chronograph.outbox.lost", lambda: [(float(self.lost), {})],
                        "Usage rows dropped: more than the in-memory bound could not be committed",
                        unit="{row}")
        observe_counter(mp, "chronograph.outbox.delivered", lambda: counter("delivered"),
                        "Usage rows delivered to Stripe (or already there)")
        observe_counter(mp, "chronograph.outbox.retried", lambda: counter("retried"),
                        "Delivery attempts that will be retried (429, 5xx, timeouts, connection errors)")
        observe_counter(mp, "chronograph.outbox.dead_lettered",
                        lambda: [(float((self.sender.counters.dead_lettered if self.sender else 0)
                                        + self.no_customer), {})],
                        "Usage rows dead-lettered with a reason (see chronograph billing status)")

    def _after_fork(self) -> None:
        # Held rows are the parent's to commit; a lock held by another thread at fork() stays held.
        self._uncommitted.clear()
        self._lock = threading.Lock()
        self._commit_lock = threading.Lock()

    @property
    def uncommitted(self) -> int:
        return len(self._uncommitted)

    def __call__(self, lap: Lap) -> None:
        try:
            rec = usage_record(lap, self.billing)
        except Exception:
            with self._lock:
                self.write_failures += 1
            _log.exception("chronograph billing: could not make a usage row for %s", lap.request_id)
            return
        if self._uncommitted:  # keep the order: older uncommitted rows go first
            self._hold(rec, None)
            self._retry.wake()
            return
        try:
            added = self.outbox.add(rec)
        except (sqlite3.Error, OSError) as exc:
            self._hold(rec, exc)
            return
        self._after_commit(rec, added, lap.command)

    def _hold(self, rec: UsageRecord, exc: BaseException | None) -> None:
        with self._lock:
            if exc is not None:
                self.write_failures += 1
            if len(self._uncommitted) >= MAX_UNCOMMITTED:
                self.lost += 1
                log_once("billing-lost", "chronograph billing: more than %d usage rows could not be "
                         "committed; dropping further ones (counted in chronograph.outbox.lost)",
                         MAX_UNCOMMITTED, traceback=False)
                return
            self._uncommitted.append(rec)
            count = len(self._uncommitted)
        if exc is not None:
            log_once("billing-commit", "chronograph billing: cannot commit usage rows to %s (%s); keeping "
                     "them in memory and retrying (counted in chronograph.outbox.uncommitted and "
                     "`chronograph billing status`)", self.outbox.path, exc, traceback=False)
        if exc is not None:
            self._reason = str(exc)
        self.outbox.note_uncommitted(count, self._reason)  # a pwrite in place: no new disk space
        self._retry.wake()

    def _retry_step(self) -> float | None:
        """Commit held rows in order until one fails; None (the default interval) while any remain."""
        done = self._commit_held()
        return 0.0 if done and self._uncommitted else None

    def _commit_held(self) -> bool:
        """True when at least one held row was committed. One committer at a time: two would both
        commit the head and both pop, dropping the row behind it."""
        with self._commit_lock:
            return self._commit_held_locked()

    def _commit_held_locked(self) -> bool:
        progressed = False
        while True:
            with self._lock:
                if not self._uncommitted:
                    break
                rec = self._uncommitted[0]
            try:
                added = self.outbox.add(rec)
            except (sqlite3.Error, OSError):
                break
            with self._lock:
                self._uncommitted.popleft()
            progressed = True
            self._after_commit(rec, added, rec.command)
        if progressed:
            self.outbox.note_uncommitted(len(self._uncommitted), self._reason)
            if not self._uncommitted:
                log_once.forget("billing-commit")  # cleared: log it again if it comes back
        return progressed

    def _after_commit(self, rec: UsageRecord, added: bool, command: str) -> None:
        if not added:
            return
        if rec.state == PENDING:
            if self.sender is not None:
                self.sender.notify()
        elif rec.state == DEAD:
            with self._lock:
                self.no_customer += 1
                first = self.no_customer == 1
            if first:  # once per process; every such row is visible in `chronograph billing status`
                _log.warning("chronograph billing: lap %s (%s) has no customer: dead-lettered with reason "
                             "'no customer' (further ones are counted, see `chronograph billing status`)",
                             rec.identifier, command)
        else:
            self.skipped += 1

    def flush(self, timeout_s: float = 30.0) -> bool:
        if self._uncommitted:
            self._commit_held()
            if self._uncommitted:
                return False
        return True if self.sender is None else self.sender.drain(timeout_s)

    def shutdown(self) -> None:
        self._retry.stop(1.0)
        if self._uncommitted:
            self._commit_held()
        if self._uncommitted:
            _log.error("chronograph billing: %d usage rows could not be committed to %s before exit; "
                       "they are lost (the application's laps were exported)", len(self._uncommitted),
                       self.outbox.path)
        try:
            if self.sender is not None:
                self.sender.shutdown()
        finally:
            self.outbox.close()
