"""The demo application under `opentelemetry-instrument`, exporting OTLP to the real Collector
(collector-config/gateway.yaml), which sends traces to a real Jaeger and metrics to a real Prometheus.

Asserts through Jaeger's query API (/api/v3/traces) that lap spans arrived with their chronograph.*
attributes and their sector children, and through Prometheus' HTTP API that every PromQL expression in
the shipped dashboards returns data.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import peers
import pytest

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
DEMO_CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "demo" / "chronograph.yaml"
DEADLINE = 90.0
SECTORS = ("init", "load", "exec", "format")


LAPS = 40  # per run: at --speed 2 a run lasts a few seconds, so several exports and scrapes see it


def _run_demo(stack: peers.PeerStack, service: str, seed: int, laps: int = LAPS) -> str:
    # Each run is its own process (own series): rate() needs increases seen within one run.
    env = {**os.environ, **stack.otel_env(service, metric_export_ms=400),
           "OTEL_PYTHON_DISTRO": "chronograph", "OTEL_PYTHON_CONFIGURATOR": "chronograph"}
    env["CHRONOGRAPH_CONFIG"] = str(DEMO_CONFIG)  # as docker-compose.yml runs it
    out = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), str(BIN / "chronograph"), "demo",
         "--laps", str(laps), "--speed", "2", "--seed", str(seed)],
        env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "SUMMARY" in out.stdout, out.stdout
    return out.stdout


def _lap_count(prom: peers.Prometheus, service: str) -> float:
    result = prom.query_vector(
        f'sum(chronograph_lap_duration_milliseconds_count{{service_name="{service}"}})')
    return float(result[0]["value"][1]) if result else 0.0


def test_demo_laps_reach_jaeger_annotated_and_every_dashboard_query_has_data(
        peer_stack: peers.PeerStack) -> None:
    jaeger, prom = peer_stack.jaeger, peer_stack.prometheus
    assert jaeger is not None and prom is not None
    service = f"chronograph-demo-{uuid.uuid4().hex[:8]}"
    started = time.time()
    try:
        first_out = _run_demo(peer_stack, service, seed=1)
        first = peers.wait_until(lambda: _lap_count(prom, service) >= LAPS and _lap_count(prom, service),
                                 DEADLINE, f"the first run's {LAPS} laps in Prometheus")
        # A second run, seen in a later scrape, so rate()/increase() windows hold an increase.
        _run_demo(peer_stack, service, seed=2)
        peers.wait_until(lambda: _lap_count(prom, service) >= first + LAPS, DEADLINE,
                         "the second run's laps in Prometheus")

        # --- Prometheus: every dashboard expression returns data --------------------------------
        peers.assert_dashboards_have_data(prom, service, rate_interval="2m", deadline=DEADLINE)

        # --- Jaeger: lap spans annotated, with their sector children -----------------------------
        def lap_spans() -> list[dict]:  # type: ignore[type-arg]
            spans = jaeger.find_traces(service, start_min=started - 60, start_max=time.time() + 60)
            return [s for s in spans if "chronograph.lap_ms" in s["_attributes"]]

        laps = peers.wait_until(lambda: len(s := lap_spans()) >= 2 * LAPS and s, DEADLINE,
                                f"{2 * LAPS} annotated lap spans in Jaeger")
        assert len({s["spanId"] for s in laps}) == len(laps) == 2 * LAPS  # each lap exactly once
        request_ids = {s["_attributes"]["chronograph.request_id"] for s in laps}
        for rid in [line.split()[1] for line in first_out.splitlines() if line.startswith("  RED")]:
            assert rid in request_ids  # the demo's own RED laps are the ones Jaeger shows
        statuses = {s["_attributes"]["chronograph.status"] for s in laps}
        assert {"GREEN", "RED"} <= statuses
        assert any(s["_attributes"].get("chronograph.error") is True for s in laps)
        for lap in laps:
            attrs = lap["_attributes"]
            assert attrs["chronograph.command"].startswith("faf ")
            assert attrs["chronograph.request_id"].startswith("req_")
            if attrs["chronograph.tier"] != "free":
                assert float(attrs["chronograph.cost"]) > 0  # the demo's rate card was applied
            for name in SECTORS[:3]:  # a failing lap stops in exec, before format
                assert attrs[f"chronograph.sector.{name}.ms"] > 0
            trace = jaeger.get_trace(lap["traceId"])
            children = [s for s in trace if s.get("parentSpanId") == lap["spanId"]]
            assert {c["_attributes"].get("chronograph.sector") for c in children} >= set(SECTORS[:3])
            assert lap["_resource"]["service.name"] == service

    except BaseException:
        print(peer_stack.logs())
        raise
