"""Stripe's side of delivery: the official SDK (``StripeClient``) as a :class:`~._sender.Transport`, and
how its errors map to outcomes. Only a process that delivers imports this (and ``stripe``, ~0.35 s).

v1: ``POST /v1/billing/meter_events`` (form-encoded), one event per request, ``identifier`` = request id.
v2: ``POST /v2/billing/meter_event_session`` for a 15-minute token, then
``POST /v2/billing/meter_event_stream`` with up to 100 events per request; the token is refreshed a minute
before it runs out and whenever Stripe answers that it has expired.

Outcomes: success or Stripe's "already exists with identifier" → delivered; 429, 5xx, timeouts,
connection errors, authentication problems → retried; other 4xx (unknown customer, bad value, timestamp
older than 35 days) → dead-letter with Stripe's message.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

import stripe

from .._config import MeterConfig
from ._outbox import OutboxRow
from ._sender import DELIVERED, Outcome

__all__ = ["StripeTransport", "classify"]

_SESSION_MARGIN_S = 60.0  # refresh the v2 token this long before it expires


def _err_text(exc: BaseException) -> str:
    if isinstance(exc, stripe.StripeError):
        status = exc.http_status
        msg = exc.user_message or str(exc) or type(exc).__name__
        code = f" {exc.code}" if exc.code else ""
        return f"{type(exc).__name__}{' HTTP ' + str(status) if status else ''}{code}: {msg}"
    return f"{type(exc).__name__}: {exc}"


def _is_duplicate(exc: stripe.StripeError) -> bool:
    text = (exc.user_message or str(exc) or "").lower()
    return exc.code == "resource_already_exists" or ("already exists" in text and "identifier" in text)


def classify(exc: BaseException) -> Outcome:
    """Map an SDK exception to an outcome (see the module docstring)."""
    if isinstance(exc, stripe.InvalidRequestError):
        if _is_duplicate(exc):
            return DELIVERED
        status = exc.http_status or 400
        if status in (408, 409, 429) or status >= 500:
            return Outcome("retry", _err_text(exc))
        return Outcome("dead", _err_text(exc))
    if isinstance(exc, stripe.TemporarySessionExpiredError):
        return Outcome("retry", _err_text(exc))
    if isinstance(exc, stripe.StripeError):
        # RateLimitError, APIError (5xx), APIConnectionError (timeouts, drops), Authentication/Permission
        # (a wrong key is a configuration problem: keep the usage and keep trying, loudly).
        return Outcome("retry", _err_text(exc))
    return Outcome("retry", _err_text(exc))


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{ms % 1000:03d}Z"


class StripeTransport:
    """The official SDK pointed at ``api_base``/``meter_events_base`` (default: Stripe itself)."""

    def __init__(self, api_key: str, meter: MeterConfig) -> None:
        bases: dict[str, str] = {}
        if meter.api_base:
            bases["api"] = meter.api_base.rstrip("/")
        if meter.meter_events_base:
            bases["meter_events"] = meter.meter_events_base.rstrip("/")
        elif meter.api_base:
            bases["meter_events"] = meter.api_base.rstrip("/")
        self._meter = meter
        self._http = stripe.RequestsClient(timeout=meter.request_timeout_s)
        self.client = stripe.StripeClient(api_key, base_addresses=bases,  # type: ignore[arg-type]
                                          http_client=self._http, max_network_retries=0)
        self._session_lock = threading.Lock()
        self._token: str | None = None
        self._token_expires = 0.0  # time.time()
        self.sessions_created = 0

    def _payload(self, row: OutboxRow) -> dict[str, str]:
        assert row.customer is not None
        return {self._meter.customer_payload_key: row.customer, self._meter.value_payload_key: str(row.value)}

    def send_v1(self, row: OutboxRow) -> Outcome:
        try:
            self.client.v1.billing.meter_events.create(params={
                "event_name": row.event_name, "identifier": row.identifier,
                "timestamp": row.ts_ms // 1000, "payload": self._payload(row)})
        except Exception as exc:
            return classify(exc)
        return DELIVERED

    def _session(self, renew: bool = False) -> str:
        with self._session_lock:
            if renew or self._token is None or time.time() > self._token_expires - _SESSION_MARGIN_S:
                session = self.client.v2.billing.meter_event_session.create()
                self._token = str(session.authentication_token)
                try:
                    exp = datetime.fromisoformat(str(session.expires_at).replace("Z", "+00:00")).timestamp()
                except ValueError:
                    exp = time.time() + 15 * 60
                self._token_expires = exp
                self.sessions_created += 1
            return self._token

    def send_v2(self, rows: Sequence[OutboxRow]) -> list[Outcome]:
        events: list[dict[str, Any]] = [
            {"event_name": r.event_name, "identifier": r.identifier, "timestamp": _iso(r.ts_ms),
             "payload": self._payload(r)} for r in rows]
        for renew in (False, True):
            try:
                token = self._session(renew)
                self.client.v2.billing.meter_event_stream.create(
                    params={"events": events}, options={"api_key": token})  # type: ignore[typeddict-item]
            except stripe.TemporarySessionExpiredError as exc:
                if renew:
                    return [classify(exc)] * len(rows)
                continue
            except Exception as exc:
                out = classify(exc)
                if out.kind == "delivered":  # a whole-batch "duplicate" is not a v2 answer: retry
                    out = Outcome("retry", _err_text(exc))
                return [out] * len(rows)
            return [DELIVERED] * len(rows)
        raise AssertionError("unreachable")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._http.close()  # type: ignore[no-untyped-call]
