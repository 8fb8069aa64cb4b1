"""The routing decision with a stand-in probe and clock (the real probe and servers are in test_routing):
modes, tiers, the latency cache and its time to live, the exit status of a remote run."""

from __future__ import annotations

from pathlib import Path

import pytest

from otel_chronograph import load_config
from otel_chronograph.exec._routing import LOCAL, Router, _exit_code


class Probe:
    def __init__(self, latencies: dict[str, float | None]) -> None:
        self.latencies = latencies
        self.calls: list[str] = []

    def __call__(self, url: str, timeout_s: float) -> float | None:
        self.calls.append(url)
        return self.latencies[url]


def router(tmp_path: Path, exec_section: dict[str, object], probe: Probe, now: list[float]) -> Router:
    cfg = load_config({"exec": exec_section}, environ={}).exec
    return Router(cfg, probe=probe, cache_path=tmp_path / "cache.json", clock=lambda: now[0])


ENDPOINTS = {"a": {"url": "http://a:1"}, "b": {"url": "http://b:1", "tiers": ["enterprise"]},
             "cloud": {"url": "http://c:1"}}


def test_smart_by_latency_tier_and_health(tmp_path: Path) -> None:
    probe = Probe({"http://a:1": 0.020, "http://b:1": 0.001, "http://c:1": 0.010})
    now = [100.0]
    r = router(tmp_path, {"mode": "smart", "endpoints": ENDPOINTS}, probe, now)
    assert r.choose("free", True) == LOCAL and probe.calls == []  # free is routed local: nothing probed
    assert r.choose("pro", False) == LOCAL  # not a named command: only here
    route = r.choose("pro", True)
    assert (route.name, route.fallback) == ("cloud", True)  # b is not open to pro
    assert r.choose("enterprise", True).name == "b"
    probe.latencies["http://b:1"] = None
    assert r.choose("enterprise", True).name == "b"  # still cached as healthy and fast
    now[0] += 31
    assert r.choose("enterprise", True).name == "cloud"  # measured again: b is down


def test_cache_ttl_and_forget(tmp_path: Path) -> None:
    probe = Probe({"http://a:1": 0.005, "http://b:1": 0.001, "http://c:1": 0.010})
    now = [0.0]
    r = router(tmp_path, {"mode": "smart", "endpoints": ENDPOINTS, "latency_ttl_s": 10}, probe, now)
    r.choose("pro", True)
    assert len(probe.calls) == 2
    r.choose("pro", True)
    assert len(probe.calls) == 2  # from the cache file
    route = r.choose("pro", True)
    r.forget(route)
    r.choose("pro", True)
    assert probe.calls[-1] == route.endpoint.url  # type: ignore[union-attr]
    never = router(tmp_path, {"mode": "smart", "endpoints": ENDPOINTS, "latency_ttl_s": 0}, probe, now)
    before = len(probe.calls)
    never.choose("pro", True)
    never.choose("pro", True)
    assert len(probe.calls) == before + 4


def test_fixed_modes(tmp_path: Path) -> None:
    probe = Probe({})
    now = [0.0]
    hybrid = router(tmp_path, {"mode": "hybrid", "endpoints": {**ENDPOINTS, "dedicated": {"url": "http://d:1"}}},
                    probe, now)
    assert hybrid.choose("free", True) == LOCAL
    assert (hybrid.choose("pro", True).name, hybrid.choose("pro", True).fallback) == ("cloud", False)
    assert hybrid.choose("enterprise", True).name == "dedicated"
    assert hybrid.choose("gold", True) == LOCAL  # a tier without a route runs here
    cloud = router(tmp_path, {"mode": "cloud", "endpoints": ENDPOINTS}, probe, now)
    assert cloud.choose("free", True).name == "cloud"
    assert router(tmp_path, {"endpoints": ENDPOINTS}, probe, now).choose("pro", True) == LOCAL
    assert probe.calls == []


@pytest.mark.parametrize(("data", "code"), [
    ({"exit_code": 3, "signal": None, "timed_out": False}, 3),
    ({"exit_code": None, "signal": "SIGKILL", "timed_out": True}, 124),
    ({"exit_code": None, "signal": "SIGTERM", "timed_out": False}, 143),
    ({"exit_code": None, "signal": "SIG40", "timed_out": False}, 168),
])
def test_remote_exit_status(data: dict[str, object], code: int) -> None:
    assert _exit_code(data) == code
