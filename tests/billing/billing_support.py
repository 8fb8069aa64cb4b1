"""Plain helpers shared by the billing tests (a module of its own: other folders have conftests too)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

API_KEY = "sk_test_fake"


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
