"""Smoke test of the real peer plumbing: SDK -> Collector(gateway.yaml) -> Jaeger and Prometheus.

Pushes one lap-shaped trace and the plugin's metrics with the plain OpenTelemetry SDK (no
chronograph code involved), then checks the trace through Jaeger's ``/api/v3/traces`` API and the
metrics through Prometheus' HTTP API, including every PromQL expression of the shipped dashboards.
"""

from __future__ import annotations

import time
import uuid

import peers
import pytest
from otlp_push import SECTORS, ChronographTelemetry

pytestmark = pytest.mark.e2e

DEADLINE = 60.0


def _lap_count(prom: peers.Prometheus, service: str) -> float:
    result = prom.query_vector(
        f'sum(chronograph_lap_duration_milliseconds_count{{service_name="{service}"}})'
    )
    return float(result[0]["value"][1]) if result else 0.0


def test_trace_and_metrics_reach_jaeger_and_prometheus(peer_stack: peers.PeerStack) -> None:
    jaeger, collector, prom = peer_stack.jaeger, peer_stack.collector, peer_stack.prometheus
    assert jaeger and collector and prom
    service = f"chronograph-smoke-{uuid.uuid4().hex[:8]}"
    started = time.time()
    telemetry = ChronographTelemetry(collector.otlp_grpc_endpoint, service_name=service)
    try:
        trace_id = telemetry.lap_trace("faf score")
        telemetry.record_laps()
        telemetry.flush()

        # Two rounds of laps, each seen by Prometheus, so rate() windows hold an increase.
        first = peers.wait_until(lambda: _lap_count(prom, service), DEADLINE, "first laps in Prometheus")
        telemetry.record_laps()
        telemetry.lap_trace("faf sync")  # span_metrics series increase too
        telemetry.flush()
        peers.wait_until(lambda: _lap_count(prom, service) > first, DEADLINE, "second laps in Prometheus")

        # --- Jaeger: the trace, by id and by service search ---------------------------------------
        spans = peers.wait_until(
            lambda: len(s := jaeger.get_trace(trace_id)) >= 1 + len(SECTORS) and s,
            DEADLINE,
            f"trace {trace_id} in Jaeger",
        )
        roots = [s for s in spans if s["_attributes"].get("chronograph.lap") is True]
        assert len(roots) == 1, spans
        root = roots[0]
        assert root["_attributes"]["chronograph.command"] == "faf score"
        assert root["_resource"]["service.name"] == service
        children = [s for s in spans if s.get("parentSpanId") == root["spanId"]]
        assert sorted(c["_attributes"]["chronograph.sector"] for c in children) == sorted(SECTORS)

        found = jaeger.find_traces(service, start_min=started - 60, start_max=time.time() + 60)
        assert {s["spanId"] for s in found} >= {s["spanId"] for s in spans}
        assert service in jaeger.services()

        # --- Prometheus: every dashboard expression returns data ----------------------------------
        def more_traffic() -> None:
            telemetry.record_laps()
            telemetry.lap_trace("faf score")
            telemetry.flush()

        peers.assert_dashboards_have_data(prom, service, rate_interval="1m", deadline=DEADLINE,
                                          keep_alive=more_traffic)
    except BaseException:
        print(peer_stack.logs())
        raise
    finally:
        telemetry.shutdown()
