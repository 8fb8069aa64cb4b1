"""`chronograph billing ...` commands, enterprise pricing, and bad input (key, customer, rates, endpoint)."""

from __future__ import annotations

import csv
import io
import json
import logging
import socket
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from fake_stripe import FakeStripe
from opentelemetry.sdk.trace import TracerProvider

import otel_chronograph as chrono
from otel_chronograph import ConfigError, load_config
from otel_chronograph._cli import main
from otel_chronograph.billing import Outbox, UsageRecord
from otel_chronograph.billing._enterprise import price_points, score_bill
from otel_chronograph.billing._outbox import now_ms

BANDS = load_config({}, environ={}).billing.enterprise_bands


def write_config(tmp_path: Path, cfg: dict[str, Any]) -> Path:
    path = tmp_path / "chronograph.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def cli(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)


def test_enterprise_progressive_pricing() -> None:
    assert price_points(85, 92, BANDS)[0] == Decimal(5 * 1000 + 2 * 2000)
    assert price_points(80, 100, BANDS)[0] == Decimal(5000 + 10000 + 20000 + 100000)
    assert price_points(95, 95, BANDS)[0] == 0
    assert price_points(97, 90, BANDS)[0] == 0  # a drop is not billed
    bill = score_bill("cus_e", [88.0, 90.5, 96.2], BANDS)
    assert (bill.baseline, bill.current, bill.total) == (88, 96, Decimal(2 * 1000 + 5 * 2000 + 5000))


def seed_ledger(box: Outbox) -> None:
    t = now_ms()
    rows = [("req_1", "cus_a", 1000, "faf score", "pro", "0.001", "pending", None, 85.0),
            ("req_2", "cus_a", 5000, "faf enhance", "pro", "0.005", "pending", None, 91.0),
            ("req_3", "cus_b", 2000, "faf score", "enterprise", "0.002", "pending", None, None),
            ("req_4", None, 0, "faf score", "free", "0", "skipped", "zero cost", None),
            ("req_5", None, 1000, "faf score", "pro", "0.001", "dead", "no customer", None)]
    for i, (ident, cust, value, cmd, tier, cost, state, reason, score) in enumerate(rows):
        box.add(UsageRecord(ident, "faf_usage", cust, value, t + i, cmd, tier, Decimal(cost), 10.0, score,
                            state, reason))
    box.mark_delivered(["req_1", "req_3"])


def test_status_report_enterprise_retry(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"chronograph": {"billing": {"meter": {"outbox": str(tmp_path / "o.db")}}}})
    seed_ledger(Outbox(tmp_path / "o.db"))
    out = cli("billing", "status", "--config", str(cfg))
    assert out.exit_code == 0, out.output
    assert "pending     1" in out.output and "delivered   2" in out.output
    assert "dead-letter 1" in out.output and "no customer" in out.output
    st = json.loads(cli("billing", "status", "--config", str(cfg), "--json").output)
    assert (st["pending"], st["delivered"], st["dead"], st["skipped"]) == (1, 2, 1, 1)
    assert st["dead_reasons"] == {"no customer": 1}

    table = cli("billing", "report", "--config", str(cfg)).output
    assert "cus_a" in table and "total: 5 laps, cost 0.009" in table
    rows = list(csv.DictReader(io.StringIO(cli("billing", "report", "--config", str(cfg), "--format", "csv",
                                               "--customer", "cus_a").output)))
    assert [(r["command"], r["laps"], r["delivered"], r["cost"]) for r in rows] == [
        ("faf enhance", "1", "0", "0.005"), ("faf score", "1", "1", "0.001")]
    doc = json.loads(cli("billing", "report", "--config", str(cfg), "--format", "json",
                         "--from", "2000-01-01", "--to", "2000-01-02").output)
    assert doc["laps"] == 0

    ent = json.loads(cli("billing", "enterprise", "--config", str(cfg), "--customer", "cus_a",
                         "--json").output)
    assert (ent["baseline"], ent["current"], ent["total"]) == (85, 91, "7000")
    text = cli("billing", "enterprise", "--config", str(cfg), "--customer", "cus_b").output
    assert "no laps with a score" in text

    assert "1 dead-letter row(s) back to pending" in cli("billing", "retry-dead-letters", "--config",
                                                         str(cfg)).output
    assert Outbox(tmp_path / "o.db").status().dead == 0


def test_bad_dates_are_reported(tmp_path: Path) -> None:
    cfg = write_config(tmp_path, {"chronograph": {"billing": {"meter": {"outbox": str(tmp_path / "o.db")}}}})
    res = CliRunner().invoke(main, ["billing", "report", "--config", str(cfg), "--from", "yesterday"])
    assert res.exit_code != 0 and "expected an ISO date" in res.output


@pytest.mark.parametrize("rate", ["-0.001", "abc", "NaN"])
def test_negative_or_non_numeric_rates_are_config_errors(tmp_path: Path, rate: str) -> None:
    path = write_config(tmp_path, {"chronograph": {"billing": {"rates": {"faf score": rate}}}})
    with pytest.raises(ConfigError) as exc:
        load_config(path, environ={})
    assert str(path) in str(exc.value) and "chronograph.billing.rates.faf score" in str(exc.value)
    res = CliRunner().invoke(main, ["billing", "status", "--config", str(path)])
    assert res.exit_code == 1 and "billing.rates" in res.output


def test_missing_api_key_keeps_usage_and_says_so(make_config: Callable[..., dict[str, Any]], tmp_path: Path,
                                                 fake: FakeStripe, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("STRIPE_API_KEY")
    cfg = make_config()
    caplog.set_level(logging.WARNING, "otel_chronograph.billing")
    provider = TracerProvider()
    processor = chrono.install(provider, config=cfg)
    with chrono.lap("faf score", tier="pro", customer="cus_1", tracer_provider=provider) as lap:
        pass
    processor.shutdown()
    assert "STRIPE_API_KEY is not set" in caplog.text
    box = Outbox(cfg["chronograph"]["billing"]["meter"]["outbox"])
    assert box.state_of(lap.telemetry.request_id) == ("pending", 0, None)
    cfg_path = write_config(tmp_path, cfg)
    status = cli("billing", "status", "--config", str(cfg_path), env={"STRIPE_API_KEY": ""})
    assert "STRIPE_API_KEY is not set" in status.output
    res = CliRunner().invoke(main, ["billing", "flush", "--config", str(cfg_path)],
                             env={"STRIPE_API_KEY": ""})
    assert res.exit_code == 1 and "STRIPE_API_KEY is not set" in res.output
    assert "nothing was lost" in res.output
    ok = cli("billing", "flush", "--config", str(cfg_path), env={"STRIPE_API_KEY": "sk_test_fake"})
    assert ok.exit_code == 0, ok.output
    assert fake.accepted_ids() == {lap.telemetry.request_id}


def test_missing_customer_is_dead_lettered_visibly(make_config: Callable[..., dict[str, Any]],
                                                   tmp_path: Path, fake: FakeStripe) -> None:
    cfg = make_config()
    provider = TracerProvider()
    processor = chrono.install(provider, config=cfg)
    with chrono.lap("faf score", tier="pro", tracer_provider=provider) as lap:
        pass
    processor.shutdown()
    box = Outbox(cfg["chronograph"]["billing"]["meter"]["outbox"])
    assert box.state_of(lap.telemetry.request_id) == ("dead", 0, "no customer")
    out = cli("billing", "status", "--config", str(write_config(tmp_path, cfg))).output
    assert "dead: 1 × no customer" in out
    assert fake.accepted_ids() == set()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_endpoint_is_retried_and_nothing_is_lost(tmp_path: Path, fake: FakeStripe) -> None:
    from billing_support import billing_config

    dead = f"http://127.0.0.1:{free_port()}"
    cfg = billing_config(tmp_path / "o.db", dead, shutdown_timeout_s=0.5, max_attempts=1000)
    provider = TracerProvider()
    processor = chrono.install(provider, config=cfg)
    ids = []
    for _ in range(5):
        with chrono.lap("faf score", tier="pro", customer="cus_1", tracer_provider=provider) as lap:
            pass
        ids.append(lap.telemetry.request_id)
    processor.shutdown()
    box = Outbox(tmp_path / "o.db")
    st = box.status()
    assert st.pending == 5 and st.dead == 0
    assert "APIConnectionError" in str(st.last_error)
    assert all((box.state_of(i) or ("", 0))[1] >= 1 for i in ids), "every row was attempted"
    cfg["chronograph"]["billing"]["meter"]["api_base"] = fake.url
    cfg["chronograph"]["billing"]["meter"]["meter_events_base"] = fake.url
    res = cli("billing", "flush", "--config", str(write_config(tmp_path, cfg)), "--timeout", "20")
    assert res.exit_code == 0, res.output
    assert fake.accepted_ids() == set(ids)


def test_external_delivery_sidecar_delivers_what_the_app_committed(tmp_path: Path, fake: FakeStripe) -> None:
    """`delivery: external`: the app only commits rows (no key, no Stripe traffic in the app); a real
    `chronograph billing deliver` process delivers them exactly once and stops cleanly on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys

    from billing_support import API_KEY, billing_config

    cfg = billing_config(tmp_path / "outbox.db", fake.url, delivery="external", flush_interval_s=0.1)
    env_no_key = {k: v for k, v in os.environ.items() if k != "STRIPE_API_KEY"}
    provider = TracerProvider()
    proc = chrono.install(provider, config=cfg)
    sink = next(s for s in proc.sinks if getattr(s, "__name__", "") == "billing")
    assert sink.sender is None  # the application never talks to Stripe
    ids = []
    for i in range(30):
        with chrono.lap("faf score", tier="pro", customer=f"cus_{i % 5}", tracer_provider=provider) as lap:
            pass
        ids.append(lap.request_id)
    proc.shutdown()
    assert fake.accepted_ids() == set()

    path = write_config(tmp_path, cfg)
    deliverer = subprocess.Popen(
        [str(Path(sys.executable).parent / "chronograph"), "billing", "deliver", "--config", str(path)],
        env={**env_no_key, "STRIPE_API_KEY": API_KEY}, stderr=subprocess.PIPE, text=True)
    try:
        assert fake.wait_for(lambda state: set(state.accepted) >= set(ids), timeout=60), \
            f"delivered {len(fake.accepted_ids())} of {len(ids)}"
    finally:
        deliverer.send_signal(signal.SIGTERM)
        _, err = deliverer.communicate(timeout=60)
    assert deliverer.returncode == 0, err
    assert fake.accepted_ids() == set(ids)
    assert "delivered 30" in err
    assert Outbox(str(tmp_path / "outbox.db")).status().pending == 0


def test_deliver_stopped_with_rows_pending_exits_0_and_keeps_them(tmp_path: Path) -> None:
    """Issue 9 item 10: a clean SIGTERM with rows still pending (Stripe unreachable) is exit 0."""
    import signal
    import subprocess
    import sys

    from billing_support import API_KEY, billing_config

    closed = __import__("socket").socket()
    closed.bind(("127.0.0.1", 0))
    dead_url = f"http://127.0.0.1:{closed.getsockname()[1]}"  # bound, never listening: refused
    cfg = billing_config(tmp_path / "outbox.db", dead_url, delivery="external", shutdown_timeout_s=0.5)
    provider = TracerProvider()
    proc = chrono.install(provider, config=cfg)
    for i in range(3):
        with chrono.lap("faf score", tier="pro", customer=f"cus_{i}", tracer_provider=provider):
            pass
    proc.shutdown()
    deliverer = subprocess.Popen(
        [str(Path(sys.executable).parent / "chronograph"), "billing", "deliver", "--config",
         str(write_config(tmp_path, cfg))],
        env={**__import__("os").environ, "STRIPE_API_KEY": API_KEY}, stderr=subprocess.PIPE, text=True)
    try:
        line = deliverer.stderr.readline() if deliverer.stderr else ""
        assert "delivering from" in line
    finally:
        deliverer.send_signal(signal.SIGTERM)
        _, err = deliverer.communicate(timeout=60)
        closed.close()
    assert deliverer.returncode == 0, err
    assert "pending 3" in err and "Traceback" not in err
    assert Outbox(str(tmp_path / "outbox.db")).status().pending == 3
