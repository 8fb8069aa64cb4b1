"""Fixtures for the billing tests: a fake Stripe on 127.0.0.1, configs pointing at it, lap helpers."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_stripe import FakeStripe

API_KEY = "sk_test_fake"


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe(customers=[f"cus_{i}" for i in range(50)] + ["cus_123"], hold_s=2.0) as server:
        yield server


@pytest.fixture(autouse=True)
def _billing_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CHRONOGRAPH_CONFIG", "OTEL_CONFIG_FILE", "CHRONOGRAPH_ENABLED", "CHRONOGRAPH_SPLIT_TIMES",
                "CHRONOGRAPH_BILLING_ENABLED", "CHRONOGRAPH_TIER"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("STRIPE_API_KEY", API_KEY)


def billing_config(outbox: Path, base: str | None, **meter: Any) -> dict[str, Any]:
    m: dict[str, Any] = {"outbox": str(outbox), "event_name": "faf_usage", "batch_size": 10,
                         "flush_interval_s": 0.05, "request_timeout_s": 0.5, "retry_base_s": 0.02,
                         "retry_max_s": 0.2, "lease_s": 5, "shutdown_timeout_s": 10}
    if base is not None:
        m["api_base"] = base
        m["meter_events_base"] = base
    m.update(meter)
    return {"chronograph": {
        "display": {"split_times": False},
        "recorder": {"enabled": False},
        "billing": {"enabled": True, "rates": {"faf score": "0.001", "faf enhance": "0.005"},
                    "default_rate": "0.0001", "meter": m}}}


@pytest.fixture
def make_config(tmp_path: Path, fake: FakeStripe) -> Callable[..., dict[str, Any]]:
    def make(**meter: Any) -> dict[str, Any]:
        return billing_config(tmp_path / "outbox.db", fake.url, **meter)
    return make
