"""Admission limits (a fake clock) and the keys file: per-key concurrency and rate, server-wide runs,
Retry-After; keys compared as digests, errors never showing a key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from otel_chronograph import ConfigError
from otel_chronograph._config import ExecTier
from otel_chronograph.exec._keys import KeyRing
from otel_chronograph.exec._limits import Limits

TIERS = {"free": ExecTier(concurrency=2, rate_per_minute=6),
         "pro": ExecTier(concurrency=5, rate_per_minute=600)}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_concurrency_per_key() -> None:
    limits = Limits(TIERS, max_running=100, clock=Clock())
    assert limits.acquire("k1", "free") is None
    assert limits.acquire("k1", "free") is None
    refusal = limits.acquire("k1", "free")
    assert refusal is not None and "2 runs at once" in refusal.reason and refusal.retry_after_s == 1
    assert limits.acquire("k2", "free") is None  # another key has its own
    limits.release("k1")
    assert limits.acquire("k1", "free") is None


def test_rate_per_minute_with_retry_after() -> None:
    clock = Clock()
    limits = Limits(TIERS, max_running=100, clock=clock)
    for _ in range(6):  # a minute's quota at once
        assert limits.acquire("k", "free") is None
        limits.release("k")
    refusal = limits.acquire("k", "free")
    assert refusal is not None and "6 runs per minute" in refusal.reason
    assert refusal.retry_after_s == 10  # one token every 10 s
    clock.now += 9.9
    assert limits.acquire("k", "free") is not None
    clock.now += 0.2
    assert limits.acquire("k", "free") is None


def test_server_wide_cap() -> None:
    limits = Limits(TIERS, max_running=3, clock=Clock())
    for key in ("a", "b", "c"):
        assert limits.acquire(key, "pro") is None
    refusal = limits.acquire("d", "pro")
    assert refusal is not None and "runs 3 commands already" in refusal.reason
    assert limits.running == 3 and limits.refused == 1


def test_keys_lookup(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps({"a" * 20: {"customer": "cus_a", "tier": "free"},
                                "b" * 20: {"customer": "cus_b", "tier": "pro"}}))
    ring = KeyRing.from_file(str(path), TIERS)
    found = ring.lookup("b" * 20)
    assert found is not None and (found.customer, found.tier) == ("cus_b", "pro")
    assert ring.lookup("b" * 19) is None and ring.lookup("") is None and ring.lookup("\udcff") is None
    assert found.key_id != ring.lookup("a" * 20).key_id  # type: ignore[union-attr]


@pytest.mark.parametrize(("doc", "message"), [
    ("not json", "not JSON"),
    ("[]", "expected"),
    (json.dumps({"short-secret": {"customer": "c", "tier": "free"}}), "shorter than 16"),
    (json.dumps({"s" * 20: {"customer": "c", "tier": "gold"}}), "tier 'gold' is not under exec.tiers"),
    (json.dumps({"s" * 20: {"customer": "c"}}), "exactly the keys customer and tier"),
    (json.dumps({"s" * 20: {"customer": "", "tier": "free"}}), "non-empty strings"),
])
def test_keys_file_errors_never_show_a_key(tmp_path: Path, doc: str, message: str) -> None:
    path = tmp_path / "keys.json"
    path.write_text(doc)
    with pytest.raises(ConfigError) as err:
        KeyRing.from_file(str(path), TIERS)
    assert message in str(err.value)
    assert "short-secret" not in str(err.value) and "s" * 20 not in str(err.value)


def test_no_keys_file_no_server() -> None:
    with pytest.raises(ConfigError, match="CHRONOGRAPH_EXEC_KEYS is not set"):
        KeyRing.from_environment(TIERS, environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        KeyRing.from_environment(TIERS, environ={"CHRONOGRAPH_EXEC_KEYS": "/nonexistent/keys.json"})
