"""Fixtures for the billing tests: a fake Stripe on 127.0.0.1, configs pointing at it, lap helpers."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from billing_support import API_KEY, billing_config
from fake_stripe import FakeStripe


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


@pytest.fixture
def make_config(tmp_path: Path, fake: FakeStripe) -> Callable[..., dict[str, Any]]:
    def make(**meter: Any) -> dict[str, Any]:
        return billing_config(tmp_path / "outbox.db", fake.url, **meter)
    return make
