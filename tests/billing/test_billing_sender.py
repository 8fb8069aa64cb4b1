"""Sender against the fake Stripe over real HTTP: outcomes, retries, dead letters, v2 sessions, leases."""

from __future__ import annotations

import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
import stripe
from billing_support import API_KEY
from fake_stripe import STREAM, V1, FakeStripe
from tests.core.helpers import wait_for

from otel_chronograph._config import MeterConfig
from otel_chronograph.billing import Outbox, Sender, StripeTransport, UsageRecord
from otel_chronograph.billing._outbox import now_ms
from otel_chronograph.billing._stripe import classify


def meter(fake: FakeStripe, tmp_path: Path, **kw: object) -> MeterConfig:
    base: dict[str, object] = {"outbox": str(tmp_path / "o.db"), "event_name": "faf_usage",
                               "api_base": fake.url, "meter_events_base": fake.url, "batch_size": 10,
                               "request_timeout_s": 0.5,
                               "retry_base_s": 0.01, "retry_max_s": 0.05, "concurrency": 4}
    base.update(kw)
    return MeterConfig.model_validate(base)


def add(box: Outbox, n: int, customer: str | None = "cus_1", ts_ms: int | None = None,
        prefix: str = "req_") -> list[str]:
    ids = []
    for i in range(n):
        ident = f"{prefix}{i:016x}"
        box.add(UsageRecord(ident, "faf_usage", customer, 1000, ts_ms or now_ms(), "faf score", "pro",
                            Decimal("0.001"), 12.5, None))
        ids.append(ident)
    return ids


def make_sender(box: Outbox, m: MeterConfig, key: str = API_KEY) -> Sender:
    return Sender(box, m, StripeTransport(key, m))


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_every_fault_kind_is_retried_and_each_event_arrives_once(fake: FakeStripe, tmp_path: Path,
                                                                 api: str) -> None:
    m = meter(fake, tmp_path, api=api, max_attempts=100)
    box = Outbox(m.outbox)
    ids: list[str] = []
    for c in range(6):
        ids += add(box, 10, customer=f"cus_{c}", prefix=f"req_{c}")
    path = V1 if api == "v1" else STREAM
    for kind in ("500", "429", "timeout", "drop", "accept_then_drop"):
        fake.fail_next(kind, 2, path=path)
    sender = make_sender(box, m)
    assert sender.drain(30)
    assert fake.accepted_ids() == set(ids)
    assert box.identifiers("delivered") == set(ids)
    assert sender.counters.delivered == len(ids)
    assert sender.counters.retried > 0
    assert sum(fake.state.faults_served.values()) == 10
    assert len(fake.state.accepted_order) == len(ids)
    sender.shutdown(1)


def test_duplicate_identifier_counts_as_delivered(fake: FakeStripe, tmp_path: Path) -> None:
    m = meter(fake, tmp_path)
    box = Outbox(m.outbox)
    ids = add(box, 3)
    fake.fail_next("accept_then_drop", 1, path=V1)  # Stripe got it, we did not hear back
    sender = make_sender(box, m)
    assert sender.drain(10)
    assert fake.accepted_ids() == set(ids)
    assert sum(fake.state.duplicates.values()) == 1
    assert box.status().delivered == 3 and box.status().dead == 0


def test_permanent_errors_dead_letter_with_the_reason(fake: FakeStripe, tmp_path: Path) -> None:
    m = meter(fake, tmp_path)
    box = Outbox(m.outbox)
    good = add(box, 2, customer="cus_1", prefix="req_a")
    unknown = add(box, 2, customer="cus_nobody", prefix="req_b")
    none = add(box, 1, customer=None, prefix="req_c")
    old = add(box, 1, ts_ms=now_ms() - 36 * 86_400_000, prefix="req_d")
    sender = make_sender(box, m)
    assert sender.drain(10)
    assert fake.accepted_ids() == set(good)
    st = box.status()
    assert st.dead == 4 and st.delivered == 2
    s = box.state_of(unknown[0])
    assert s is not None and s[0] == "dead" and "No such customer" in str(s[2])
    assert box.state_of(none[0]) == ("dead", 1, "no customer")
    assert box.state_of(old[0]) == ("dead", 1, "timestamp older than 35 days")
    assert sender.counters.dead_lettered == 4


def test_server_rejects_old_timestamps_too(fake: FakeStripe, tmp_path: Path) -> None:
    m = meter(fake, tmp_path)
    t = StripeTransport(API_KEY, m)
    from otel_chronograph.billing._outbox import OutboxRow

    out = t.send_v1(OutboxRow("req_old", "faf_usage", "cus_1", 5, now_ms() - 40 * 86_400_000, 0))
    assert out.kind == "dead" and "35" in str(out.error)
    assert t.send_v1(OutboxRow("req_ok", "faf_usage", "cus_1", 5, now_ms(), 0)).kind == "delivered"
    assert t.send_v1(OutboxRow("req_ok", "faf_usage", "cus_1", 5, now_ms(), 0)).kind == "delivered"


def test_gives_up_after_max_attempts_into_dead_letter(fake: FakeStripe, tmp_path: Path) -> None:
    m = meter(fake, tmp_path, max_attempts=3)
    box = Outbox(m.outbox)
    ids = add(box, 1)
    fake.fail_next("500", 10, path=V1)
    sender = make_sender(box, m)
    assert sender.drain(10)
    state, attempts, reason = box.state_of(ids[0]) or ("", 0, "")
    assert state == "dead" and attempts == 3
    assert reason is not None and reason.startswith("gave up after 3 attempts") and "500" in reason
    assert fake.accepted_ids() == set()


def test_at_most_one_request_in_flight_per_customer_on_v1(fake: FakeStripe, tmp_path: Path) -> None:
    m = meter(fake, tmp_path, concurrency=8, batch_size=50)
    box = Outbox(m.outbox)
    ids: list[str] = []
    for c in range(3):
        ids += add(box, 40, customer=f"cus_{c}", prefix=f"req_{c}")
    sender = make_sender(box, m)
    assert sender.drain(30)
    assert fake.accepted_ids() == set(ids)
    assert max(fake.state.max_in_flight.values()) == 1


def test_v2_session_refresh_on_expiry_and_batches_of_at_most_100(fake: FakeStripe, tmp_path: Path) -> None:
    m = meter(fake, tmp_path, api="v2", batch_size=100, concurrency=2)
    box = Outbox(m.outbox)
    ids = add(box, 250)
    sender = make_sender(box, m)
    assert sender.drain(20)
    assert fake.state.sessions_created == 1
    assert fake.state.requests[STREAM] == 3  # 100 + 100 + 50
    more = add(box, 5, prefix="req_more")
    fake.expire_sessions()
    assert sender.drain(20)
    assert fake.state.sessions_created == 2
    assert fake.accepted_ids() == set(ids) | set(more)
    assert not fake.state.v2_rejected


def test_v2_session_is_renewed_before_it_runs_out(tmp_path: Path) -> None:
    with FakeStripe(customers=["cus_1"], session_ttl_s=30) as fake:  # less than the 60 s margin
        m = meter(fake, tmp_path, api="v2")
        box = Outbox(m.outbox)
        add(box, 3)
        sender = make_sender(box, m)
        assert sender.drain(10)
        add(box, 3, prefix="req_x")
        assert sender.drain(10)
        assert fake.state.sessions_created == 2
        assert len(fake.accepted_ids()) == 6


def test_two_senders_sharing_an_outbox_never_send_a_row_twice(fake: FakeStripe, tmp_path: Path) -> None:
    m = meter(fake, tmp_path, batch_size=5, concurrency=2)
    box_a, box_b = Outbox(m.outbox), Outbox(m.outbox)  # separate connections, like two processes
    ids: list[str] = []
    for c in range(10):
        ids += add(box_a, 20, customer=f"cus_{c}", prefix=f"req_{c}")
    a, b = make_sender(box_a, m), make_sender(box_b, m)
    results: list[bool] = []
    threads = [threading.Thread(target=lambda s=s: results.append(s.drain(30))) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == [True, True]
    assert fake.accepted_ids() == set(ids)
    assert all(n == 1 for n in fake.state.attempts.values()), "a row was sent by both senders"
    assert a.counters.delivered > 0 and b.counters.delivered > 0
    assert a.counters.delivered + b.counters.delivered == len(ids)


def test_background_sender_flushes_on_batch_size_and_interval(fake: FakeStripe, tmp_path: Path) -> None:
    m = meter(fake, tmp_path, batch_size=5, flush_interval_s=3600)
    box = Outbox(m.outbox)
    sender = make_sender(box, m)
    sender.start()
    assert fake.wait_for(lambda s: True, 0.1)
    first = add(box, 4, prefix="req_a")
    for _ in first:
        sender.notify()
    fresh = add(box, 1, prefix="req_b")
    sender.notify()  # the 5th row: a batch is ready
    assert fake.wait_for(lambda s: len(s.accepted) == 5, 10)
    assert fake.accepted_ids() == set(first) | set(fresh)
    sender.shutdown(5)
    m2 = meter(fake, tmp_path, batch_size=100, flush_interval_s=0.05)
    s2 = make_sender(box, m2)
    later = add(box, 2, prefix="req_c")
    s2.start()  # on start and then every flush_interval_s
    assert fake.wait_for(lambda s: set(later) <= set(s.accepted), 10)
    s2.shutdown(5)


def test_crashed_owner_lease_expires_and_another_sender_takes_over(fake: FakeStripe, tmp_path: Path) -> None:
    m = meter(fake, tmp_path, lease_s=0.3)
    box = Outbox(m.outbox)
    ids = add(box, 4)
    claimed = box.claim("dead-process", 10, lease_s=0.3)
    assert len(claimed) == 4
    sender = make_sender(box, m)
    assert sender.drain(10)  # a shutdown flush leaves other owners' leases alone
    assert fake.accepted_ids() == set()
    t0 = time.monotonic()
    assert sender.drain(10, include_leased=True)  # `billing flush` / next start waits and takes over
    assert time.monotonic() - t0 >= 0.2  # it waited for the lease, it did not steal it
    assert fake.accepted_ids() == set(ids)


def test_shutdown_is_bounded_when_stripe_is_down(tmp_path: Path) -> None:
    with FakeStripe() as fake:
        url = fake.url
    m = MeterConfig.model_validate({"outbox": str(tmp_path / "o.db"), "api_base": url,
                                    "request_timeout_s": 0.2, "retry_base_s": 0.05, "retry_max_s": 0.1,
                                    "shutdown_timeout_s": 1.0, "max_attempts": 1000})
    box = Outbox(m.outbox)
    ids = add(box, 5)
    sender = make_sender(box, m)
    sender.start()
    t0 = time.monotonic()
    assert sender.shutdown() is False
    assert time.monotonic() - t0 < 3.0
    st = box.status()
    assert st.pending == 5 and st.dead == 0  # nothing lost; the next start drains it
    assert "APIConnectionError" in str(st.last_error)
    assert len(box.claim("next-start", 10, 5, now=now_ms() + 1000)) == 5  # leases released at shutdown
    assert {r for r in ids} == box.identifiers("pending")


def test_classify_maps_sdk_errors() -> None:
    dup = stripe.InvalidRequestError("An event already exists with identifier req_1.", "identifier",
                                     code="resource_already_exists", http_status=400)
    assert classify(dup).kind == "delivered"
    assert classify(stripe.InvalidRequestError("No such customer", "payload", http_status=400)).kind == "dead"
    assert classify(stripe.RateLimitError("slow down", http_status=429)).kind == "retry"
    assert classify(stripe.APIError("boom", http_status=500)).kind == "retry"
    assert classify(stripe.APIConnectionError("reset")).kind == "retry"
    assert classify(stripe.AuthenticationError("bad key", http_status=401)).kind == "retry"


def test_a_pool_that_refuses_work_still_delivers(fake: FakeStripe, tmp_path: Path) -> None:
    """At interpreter exit concurrent.futures refuses new work before the final drain runs."""
    m = meter(fake, tmp_path)
    box = Outbox(m.outbox)
    ids = add(box, 4, customer="cus_1") + add(box, 3, customer="cus_2", prefix="req_b")
    sender = make_sender(box, m)
    sender._pool.shutdown()
    assert sender.drain(10)
    assert fake.accepted_ids() == set(ids)
    sender.shutdown(1)


def test_start_sends_leftovers_at_once_and_lets_fresh_rows_wait_for_a_batch(fake: FakeStripe,
                                                                            tmp_path: Path) -> None:
    m = meter(fake, tmp_path, batch_size=100, flush_interval_s=3600)
    box = Outbox(m.outbox)
    old = add(box, 3, prefix="old_")
    last = now_ms()
    while now_ms() <= last:  # the sender is born in a later millisecond than the leftovers
        pass
    sender = make_sender(box, m)
    fresh = add(box, 2, prefix="new_")
    sender.start()
    wait_for(lambda: box.identifiers("delivered") == set(old), 10, "the leftovers delivered")
    assert sender.shutdown(0) is False  # no time to drain: the fresh rows were never sent
    assert box.identifiers("pending") == set(fresh)
    assert fake.accepted_ids() == set(old)
