"""A Stripe-compatible meter-events server on real HTTP (127.0.0.1) for the billing tests.

Endpoints (shapes as Stripe's):
- ``POST /v1/billing/meter_events`` form-encoded (``event_name``, ``identifier``, ``timestamp``,
  ``payload[...]``), secret key as Bearer; errors ``{"error": {"type": "invalid_request_error", ...}}``.
- ``POST /v2/billing/meter_event_session`` → ``{"object": "v2.billing.meter_event_session",
  "authentication_token", "expires_at", ...}`` (15 minutes).
- ``POST /v2/billing/meter_event_stream`` JSON ``{"events": [...]}`` (≤ 100) with the session token as
  Bearer; ``401 temporary_session_expired`` when it has expired; ``{}`` on success (validation is
  asynchronous at Stripe: invalid or duplicate events are dropped and listed in ``v2_rejected``).

State kept for assertions: ``accepted`` (identifier → event, at most once), ``attempts`` (identifier →
how many times it was sent), ``duplicates`` (identifier → duplicate answers), the request log, and the
largest number of concurrent v1 requests seen per customer+meter.

Faults on demand: ``fail_next(kind, n, path=...)`` or a random ``fault_rate`` with a seeded RNG, kinds
``500``, ``429``, ``timeout`` (holds the request past the client's timeout, then drops it), ``drop``
(closes the connection without an answer), ``accept_then_drop`` (records the event, then drops: the
ambiguous case), ``expire`` (expires every v2 session first).
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

V1 = "/v1/billing/meter_events"
SESSION = "/v2/billing/meter_event_session"
STREAM = "/v2/billing/meter_event_stream"
MAX_AGE_S = 35 * 86_400
FAULT_KINDS = ("500", "429", "timeout", "drop", "accept_then_drop")


@dataclass
class Fault:
    kind: str
    path: str | None = None


@dataclass
class State:
    api_key: str = "sk_test_fake"
    customers: set[str] = field(default_factory=set)
    any_customer: bool = False
    customer_key: str = "stripe_customer_id"
    value_key: str = "value"
    accepted: dict[str, dict[str, Any]] = field(default_factory=dict)
    accepted_order: list[str] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    duplicates: Counter[str] = field(default_factory=Counter)
    rejected: dict[str, str] = field(default_factory=dict)
    v2_rejected: dict[str, str] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    faults_served: Counter[str] = field(default_factory=Counter)
    sessions: dict[str, float] = field(default_factory=dict)  # token -> expires (time.time())
    sessions_created: int = 0
    in_flight: Counter[tuple[str, str]] = field(default_factory=Counter)
    max_in_flight: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))


class FakeStripe:
    """Start with ``with FakeStripe() as fake:``; ``fake.url`` is the base for both base addresses."""

    def __init__(self, customers: Iterable[str] = ("cus_123",), any_customer: bool = False,
                 hold_s: float = 3.0, seed: int = 0, session_ttl_s: float = 900.0) -> None:
        self.state = State(customers=set(customers), any_customer=any_customer)
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.hold_s = hold_s
        self.session_ttl_s = session_ttl_s
        self._faults: list[Fault] = []
        self.fault_rate = 0.0
        self.fault_kinds: tuple[str, ...] = FAULT_KINDS
        self._rng = random.Random(seed)
        self._release = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._server.request_queue_size = 128
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FakeStripe:
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeStripe:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- control ---------------------------------------------------------------------------------

    def fail_next(self, kind: str, n: int = 1, path: str | None = None) -> None:
        assert kind in (*FAULT_KINDS, "expire"), kind
        with self.lock:
            self._faults.extend(Fault(kind, path) for _ in range(n))

    def set_fault_rate(self, rate: float, kinds: tuple[str, ...] = FAULT_KINDS) -> None:
        with self.lock:
            self.fault_rate = rate
            self.fault_kinds = kinds

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()
            self.fault_rate = 0.0

    def expire_sessions(self) -> None:
        with self.lock:
            for tok in self.state.sessions:
                self.state.sessions[tok] = 0.0

    def add_customer(self, *ids: str) -> None:
        with self.lock:
            self.state.customers.update(ids)

    def accepted_ids(self) -> set[str]:
        with self.lock:
            return set(self.state.accepted)

    def wait_for(self, predicate: Any, timeout: float = 20.0) -> bool:
        """Wait (on the server's condition, not a sleep) until ``predicate(state)`` holds."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while not predicate(self.state):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.changed.wait(left)
            return True

    # -- request handling ------------------------------------------------------------------------

    def _take_fault(self, path: str) -> str | None:
        with self.lock:
            for i, f in enumerate(self._faults):
                if f.path is None or f.path == path:
                    del self._faults[i]
                    if f.kind == "expire":
                        for tok in self.state.sessions:
                            self.state.sessions[tok] = 0.0
                        return None
                    return f.kind
            if self.fault_rate and self._rng.random() < self.fault_rate:
                return self._rng.choice(self.fault_kinds)
        return None

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def setup(self) -> None:
                super().setup()
                # headers and body go out in two writes: without this, Nagle + delayed ACK add 40 ms
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _send(self, code: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", "req_fake_" + secrets.token_hex(6))
                self.end_headers()
                self.wfile.write(data)

            def _error(self, code: int, message: str, type_: str = "invalid_request_error",
                       code_: str | None = None, param: str | None = None) -> None:
                err: dict[str, Any] = {"type": type_, "message": message}
                if code_:
                    err["code"] = code_
                if param:
                    err["param"] = param
                self._send(code, {"error": err})

            def _drop(self) -> None:
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

            def _bearer(self) -> str | None:
                auth = self.headers.get("Authorization", "")
                return auth[7:] if auth.startswith("Bearer ") else None

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                path = self.path.split("?")[0]
                with fake.lock:
                    fake.state.requests[path] += 1
                fault = fake._take_fault(path)
                if fault is not None:
                    with fake.lock:
                        fake.state.faults_served[fault] += 1
                if fault == "500":
                    return self._error(500, "An unknown error occurred", type_="api_error")
                if fault == "429":
                    return self._error(429, "Too many requests hit the API too quickly.",
                                       code_="rate_limit")
                if fault == "timeout":
                    fake._release.wait(fake.hold_s)
                    return self._drop()
                if fault == "drop":
                    return self._drop()
                if path == V1:
                    self._v1(raw, drop_after=fault == "accept_then_drop")
                elif path == SESSION:
                    self._session()
                elif path == STREAM:
                    self._stream(raw, drop_after=fault == "accept_then_drop")
                else:
                    self._error(404, f"Unrecognized request URL (POST: {path}).")

            # v1 ---------------------------------------------------------------------------------
            def _v1(self, raw: str, drop_after: bool) -> None:
                if self._bearer() != fake.state.api_key:
                    return self._error(401, "Invalid API Key provided.", code_="api_key_invalid")
                form = dict(parse_qsl(raw, keep_blank_values=True))
                payload = {k[8:-1]: v for k, v in form.items()
                           if k.startswith("payload[") and k.endswith("]")}
                ev = {"event_name": form.get("event_name"), "identifier": form.get("identifier"),
                      "timestamp": form.get("timestamp"), "payload": payload}
                customer = payload.get(fake.state.customer_key, "")
                key = (customer, str(ev["event_name"]))
                with fake.lock:
                    fake.state.in_flight[key] += 1
                    fake.state.max_in_flight[key] = max(fake.state.max_in_flight[key],
                                                        fake.state.in_flight[key])
                try:
                    err = fake._validate(ev)
                    if err is not None:
                        code, message, param, code_ = err
                        if code_ == "resource_already_exists" and drop_after:
                            return self._drop()
                        return self._error(code, message, code_=code_, param=param)
                    ts = int(str(ev["timestamp"])) if ev["timestamp"] else int(time.time())
                    body = {"object": "billing.meter_event", "created": int(time.time()),
                            "event_name": ev["event_name"], "identifier": ev["identifier"],
                            "livemode": False, "payload": payload, "timestamp": ts}
                    if drop_after:
                        return self._drop()
                    self._send(200, body)
                finally:
                    with fake.lock:
                        fake.state.in_flight[key] -= 1

            # v2 ---------------------------------------------------------------------------------
            def _session(self) -> None:
                if self._bearer() != fake.state.api_key:
                    return self._error(401, "Invalid API Key provided.", code_="api_key_invalid")
                token = "mes_tok_" + secrets.token_hex(12)
                now = datetime.now(timezone.utc)
                expires = now + timedelta(seconds=fake.session_ttl_s)
                with fake.changed:
                    fake.state.sessions[token] = expires.timestamp()
                    fake.state.sessions_created += 1
                self._send(200, {"id": "mes_" + secrets.token_hex(8),
                                 "object": "v2.billing.meter_event_session",
                                 "authentication_token": token, "livemode": False,
                                 "created": now.isoformat().replace("+00:00", "Z"),
                                 "expires_at": expires.isoformat().replace("+00:00", "Z")})

            def _stream(self, raw: str, drop_after: bool) -> None:
                token = self._bearer()
                with fake.lock:
                    exp = fake.state.sessions.get(token or "")
                if exp is None:
                    return self._error(401, "Invalid authentication token.", type_="invalid_request_error",
                                       code_="billing_meter_event_session_invalid")
                if exp <= time.time():
                    return self._error(401, "The meter event session has expired.",
                                       type_="temporary_session_expired",
                                       code_="billing_meter_event_session_expired")
                try:
                    body = json.loads(raw or "{}")
                except json.JSONDecodeError:
                    return self._error(400, "Invalid JSON body.")
                events = body.get("events")
                if not isinstance(events, list) or not 1 <= len(events) <= 100:
                    return self._error(400, "events must hold between 1 and 100 events.", param="events")
                for e in events:
                    if not isinstance(e, dict) or not e.get("event_name") or not isinstance(e.get("payload"),
                                                                                           dict):
                        return self._error(400, "Each event needs event_name and payload.", param="events")
                for e in events:
                    ts = e.get("timestamp")
                    ev = {"event_name": e["event_name"], "identifier": e.get("identifier"),
                          "timestamp": str(int(datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()))
                          if ts else None, "payload": e["payload"]}
                    err = fake._validate(ev)
                    if err is not None:  # asynchronous at Stripe: the request still succeeds
                        with fake.lock:
                            fake.state.v2_rejected[str(ev["identifier"])] = err[1]
                if drop_after:
                    return self._drop()
                self._send(200, {})

        return Handler

    def _validate(self, ev: dict[str, Any]) -> tuple[int, str, str | None, str | None] | None:
        """None when accepted (and recorded); else (status, message, param, code)."""
        st = self.state
        ident = str(ev.get("identifier") or "")
        payload = ev.get("payload") or {}
        with self.changed:
            if ident:
                st.attempts[ident] += 1
            if not ev.get("event_name"):
                return 400, "Missing required param: event_name.", "event_name", "parameter_missing"
            customer = payload.get(st.customer_key)
            if not customer:
                return (400, f"Missing required param: payload[{st.customer_key}].",
                        f"payload[{st.customer_key}]", "parameter_missing")
            if not st.any_customer and customer not in st.customers:
                st.rejected[ident] = "no such customer"
                return (400, f"No such customer: '{customer}'", f"payload[{st.customer_key}]",
                        "resource_missing")
            value = payload.get(st.value_key)
            try:
                ok = value is not None and float(value) >= 0 and float(value) == int(float(value))
            except ValueError:
                ok = False
            if not ok:
                st.rejected[ident] = "bad value"
                return (400, f"Invalid payload[{st.value_key}]: must be a non-negative whole number.",
                        f"payload[{st.value_key}]", "parameter_invalid_integer")
            ts = ev.get("timestamp")
            if ts:
                t = int(ts)
                if t < time.time() - MAX_AGE_S:
                    st.rejected[ident] = "too old"
                    return (400, "Timestamp must be within the past 35 calendar days.", "timestamp",
                            "timestamp_too_far_in_past")
                if t > time.time() + 300:
                    return 400, "Timestamp must not be more than 5 minutes in the future.", "timestamp", None
            if ident and ident in st.accepted:
                st.duplicates[ident] += 1
                return (400, f"An event already exists with identifier {ident}.", "identifier",
                        "resource_already_exists")
            if not ident:
                ident = "gen_" + secrets.token_hex(8)
            st.accepted[ident] = dict(ev)
            st.accepted_order.append(ident)
            self.changed.notify_all()
        return None
