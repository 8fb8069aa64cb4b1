"""The billing sink through ``chrono.install``: commit before telemetry, values, metrics, v1/v2 end to end."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from fake_stripe import FakeStripe
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider

import otel_chronograph as chrono
from otel_chronograph import load_config
from otel_chronograph._lap import Lap
from otel_chronograph.billing import BillingSink, Outbox, billing_sink_factory, usage_record
from otel_chronograph.billing._sink import cost_micros

SECTORS = ("init", "load", "exec", "format")


def run_laps(provider: TracerProvider, n: int, customer: str | None = "cus_123", tier: str = "pro",
             command: str = "faf score", check: Callable[[Any], None] | None = None) -> list[str]:
    ids = []
    for _ in range(n):
        with chrono.lap(command, tier=tier, customer=customer, tracer_provider=provider) as lap:
            for s in SECTORS:
                with chrono.sector(s, tracer_provider=provider):
                    pass
        if check is not None:
            check(lap)
        ids.append(lap.telemetry.request_id)
    return ids


def lap(cost: str = "0.001", customer: str | None = "cus_1", lap_ms: float = 12.4) -> Lap:
    return Lap(request_id="req_00000000000000aa", trace_id="0" * 32, span_id="0" * 16, command="faf score",
               timestamp=1_763_762_400_123, start_ns=0, end_ns=1, lap_ms=lap_ms, other_ms=0.0, sectors={},
               critical_path={}, critical_other_ms=0.0, status="GREEN", error=False, tier="pro",
               customer=customer, score=None, cost=Decimal(cost))


@pytest.mark.parametrize("api", ["v1", "v2"])
def test_laps_are_committed_before_telemetry_and_billed_once(make_config: Callable[..., dict[str, Any]],
                                                             fake: FakeStripe, api: str) -> None:
    cfg = make_config(api=api, flush_interval_s=3600, batch_size=100)
    provider = TracerProvider()
    processor = chrono.install(provider, config=cfg)
    box = Outbox(cfg["chronograph"]["billing"]["meter"]["outbox"])
    seen: list[str] = []

    def committed(handle: Any) -> None:  # runs right after the with-block: the row must exist already
        state = box.state_of(handle.telemetry.request_id)
        assert state is not None and state[0] in ("pending", "delivered")
        seen.append(handle.telemetry.request_id)

    ids = run_laps(provider, 30, check=committed)
    assert len(seen) == 30
    processor.shutdown()  # flushes within meter.shutdown_timeout_s
    assert fake.accepted_ids() == set(ids)
    ev = fake.state.accepted[ids[0]]
    assert ev["event_name"] == "faf_usage"
    assert ev["payload"] == {"stripe_customer_id": "cus_123", "value": "1000"}  # 0.001 × 1 → 1000 micros
    assert box.status().delivered == 30


def test_factory_is_off_by_default_and_env_switches_it_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          fake: FakeStripe) -> None:
    off = load_config({"billing": {"meter": {"outbox": str(tmp_path / "x.db")}}}, environ={})
    assert billing_sink_factory(off, None) is None
    monkeypatch.setenv("CHRONOGRAPH_BILLING_ENABLED", "true")
    on = load_config({"billing": {"meter": {"outbox": str(tmp_path / "x.db"), "api_base": fake.url}}})
    made = billing_sink_factory(on, None)
    assert made is not None
    sink, deferred = made
    assert deferred is False and isinstance(sink, BillingSink)
    sink.shutdown()  # type: ignore[attr-defined]


def test_usage_values_are_exact_and_free_laps_are_skipped(tmp_path: Path) -> None:
    billing = load_config({"billing": {"enabled": True}}, environ={}).billing
    assert cost_micros(Decimal("0.001")) == 1000
    assert cost_micros(Decimal("0.0000015")) == 2  # half-even beyond 6 decimals
    assert cost_micros(Decimal("123.456789")) == 123_456_789
    r = usage_record(lap("0.005"), billing)
    assert (r.value, r.state, r.identifier) == (5000, "pending", "req_00000000000000aa")
    free = usage_record(lap("0", customer=None), billing)
    assert (free.value, free.state, free.reason) == (0, "skipped", "zero cost")
    nocust = usage_record(lap("0.002", customer=None), billing)
    assert (nocust.state, nocust.reason) == ("dead", "no customer")
    req = load_config({"billing": {"meter": {"value": "requests"}}}, environ={}).billing
    assert usage_record(lap("0"), req).value == 1 and usage_record(lap("0"), req).state == "pending"
    ms = load_config({"billing": {"meter": {"value": "lap_ms"}}}, environ={}).billing
    assert usage_record(lap(lap_ms=12.5), ms).value == 12 and usage_record(lap(lap_ms=13.5), ms).value == 14


def test_outbox_metrics_have_the_spec_names(make_config: Callable[..., dict[str, Any]],
                                             fake: FakeStripe) -> None:
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    cfg = make_config(flush_interval_s=3600, batch_size=100)
    provider = TracerProvider()
    fake.fail_next("500", 1)  # whichever round sends first (start-up or flush) is retried once
    processor = chrono.install(provider, config=cfg, meter_provider=mp)
    run_laps(provider, 3)
    run_laps(provider, 1, customer=None)

    def points() -> dict[str, float]:
        data = reader.get_metrics_data()
        out: dict[str, float] = {}
        assert data is not None
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name.startswith("chronograph.outbox."):
                        out[m.name] = sum(p.value for p in m.data.data_points)  # type: ignore[union-attr]
        return out

    before = points()
    # The sender's first round (leftovers of an earlier run go out at once) may already have taken laps
    # committed while it started: what is not pending is delivered.
    assert before["chronograph.outbox.depth"] + before["chronograph.outbox.delivered"] == 3
    assert before["chronograph.outbox.oldest_age"] >= 0
    assert before["chronograph.outbox.dead_lettered"] == 1
    sink = next(s for s in processor.sinks if isinstance(s, BillingSink))
    assert sink.flush(10)
    after = points()
    assert after["chronograph.outbox.depth"] == 0
    assert after["chronograph.outbox.delivered"] == 3
    assert after["chronograph.outbox.retried"] >= 1
    assert set(after) == {"chronograph.outbox.depth", "chronograph.outbox.oldest_age",
                          "chronograph.outbox.delivered", "chronograph.outbox.retried",
                          "chronograph.outbox.dead_lettered", "chronograph.outbox.uncommitted",
                          "chronograph.outbox.lost"}
    assert after["chronograph.outbox.uncommitted"] == 0 and after["chronograph.outbox.lost"] == 0
    processor.shutdown()


def test_a_failing_outbox_never_raises_into_the_app(tmp_path: Path, fake: FakeStripe) -> None:
    cfg = load_config({"billing": {"enabled": True, "meter": {"outbox": str(tmp_path / "o.db"),
                                                               "api_base": fake.url}}}, environ={})
    sink = BillingSink(cfg, start=False)
    sink.outbox.close()
    (tmp_path / "o.db").unlink()
    sink.outbox.path = str(tmp_path / "missing-dir" / "o.db")  # cannot be opened
    sink(lap())
    assert sink.write_failures == 1


def test_next_start_drains_leftovers(make_config: Callable[..., dict[str, Any]], fake: FakeStripe,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_config(flush_interval_s=3600, batch_size=100)
    monkeypatch.delenv("STRIPE_API_KEY")  # first run: no key, rows stay in the outbox
    provider = TracerProvider()
    p1 = chrono.install(provider, config=cfg)
    ids = run_laps(provider, 5)
    p1.shutdown()
    assert fake.accepted_ids() == set()
    monkeypatch.setenv("STRIPE_API_KEY", "sk_test_fake")
    p2 = chrono.install(TracerProvider(), config=cfg)
    assert fake.wait_for(lambda s: set(ids) <= set(s.accepted), 10)
    p2.shutdown()


def test_text_sqlite_cannot_encode_is_committed_escaped(tmp_path: Path) -> None:
    """A customer or command with a lone surrogate (from hostile OTLP JSON) still gets its usage row,
    stored escaped (Stripe will dead-letter the odd customer id with its reason), not a sink failure."""
    from dataclasses import replace

    cfg = load_config({"billing": {"enabled": True, "meter": {"outbox": str(tmp_path / "o.db"),
                                                               "delivery": "external"}}}, environ={})
    sink = BillingSink(cfg, environ={})
    sink(replace(lap(customer="cus_\udc80"), command="faf \ud800"))
    assert sink.write_failures == 0 and sink.uncommitted == 0
    assert sink.outbox.state_of("req_00000000000000aa") == ("pending", 0, None)
    assert sink.outbox.ledger(None, None, "cus_\\udc80")[0][1] == "faf \\ud800"
    sink.shutdown()


def test_a_row_that_cannot_be_committed_after_shutdown_is_counted_lost(tmp_path: Path) -> None:
    """After shutdown() nothing retries held rows: one that cannot be committed then is counted in
    chronograph.outbox.lost and logged, never left in memory silently."""
    cfg = load_config({"billing": {"enabled": True, "meter": {"outbox": str(tmp_path / "o.db"),
                                                               "delivery": "external"}}}, environ={})
    sink = BillingSink(cfg, environ={})
    sink.shutdown()
    for f in tmp_path.glob("o.db*"):
        f.unlink()
    (tmp_path / "o.db").mkdir()  # now it cannot be opened
    sink(lap())
    assert sink.write_failures == 1 and sink.lost == 1 and sink.uncommitted == 0
