"""The billing lap sink: one committed outbox row per lap, on the lap's path; delivery in the background."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from decimal import ROUND_HALF_EVEN, Decimal

from opentelemetry.metrics import MeterProvider

from .._config import BillingConfig, ChronographConfig
from .._lap import Lap
from .._metrics import observe_counter, observe_gauge
from ._outbox import DEAD, PENDING, SKIPPED, Outbox, UsageRecord
from ._sender import Sender, StripeTransport, Transport

__all__ = ["BillingSink", "MissingApiKey", "api_key_from", "usage_record"]

_log = logging.getLogger("otel_chronograph.billing")
_MICROS = Decimal(1_000_000)
NO_KEY = ("STRIPE_API_KEY is not set: usage is kept in the outbox {path} and not sent. "
          "Set STRIPE_API_KEY and run `chronograph billing flush` (or restart) to deliver it")


class MissingApiKey(RuntimeError):
    """Raised by commands that must talk to Stripe when ``STRIPE_API_KEY`` is not set."""


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

        observe_counter(mp, "chronograph.outbox.delivered", lambda: counter("delivered"),
                        "Usage rows delivered to Stripe (or already there)")
        observe_counter(mp, "chronograph.outbox.retried", lambda: counter("retried"),
                        "Delivery attempts that will be retried (429, 5xx, timeouts, connection errors)")
        observe_counter(mp, "chronograph.outbox.dead_lettered",
                        lambda: [(float((self.sender.counters.dead_lettered if self.sender else 0)
                                        + self.no_customer), {})],
                        "Usage rows dead-lettered with a reason (see chronograph billing status)")

    def __call__(self, lap: Lap) -> None:
        try:
            rec = usage_record(lap, self.billing)
            added = self.outbox.add(rec)
        except Exception:
            with self._lock:
                self.write_failures += 1
            _log.exception("chronograph billing: could not record usage for %s", lap.request_id)
            return
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
                             lap.request_id, lap.command)
        else:
            self.skipped += 1

    def flush(self, timeout_s: float = 30.0) -> bool:
        return True if self.sender is None else self.sender.drain(timeout_s)

    def shutdown(self) -> None:
        try:
            if self.sender is not None:
                self.sender.shutdown()
        finally:
            self.outbox.close()
