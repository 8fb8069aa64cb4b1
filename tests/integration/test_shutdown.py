"""Nothing lost at shutdown: two real FastAPI services under `opentelemetry-instrument` with the
chronograph configurator (A calls B three times per request), each stopped with SIGTERM right after
the last response. Every span and every lap of every completed request must be exported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.otlp_receiver import OTLPReceiver

from .test_autoinstrument import BIN, HERE, _free_port, _wait_http

REQUESTS = 5
CONFIG = """
chronograph:
  sectors:
    rules: [{name: storage, match: {attribute: db.system}}, {name: backend, match: {kind: CLIENT}}]
  recorder: {enabled: true}
"""


def _start(app: str, port: int, rx: OTLPReceiver, cfg: Path, extra: dict[str, str]
           ) -> subprocess.Popen[bytes]:
    env = {**os.environ, "OTEL_PYTHON_DISTRO": "chronograph", "OTEL_PYTHON_CONFIGURATOR": "chronograph",
           "CHRONOGRAPH_CONFIG": str(cfg), "OTEL_SERVICE_NAME": app,
           "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
           "OTEL_LOGS_EXPORTER": "none", "OTEL_METRIC_EXPORT_INTERVAL": "60000",
           "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path]), **extra}
    return subprocess.Popen(
        [str(BIN / "opentelemetry-instrument"), "--traces_exporter", "otlp", "--metrics_exporter", "otlp",
         str(BIN / "uvicorn"), f"two_services:{app}", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning"],
        cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("run", range(3))
def test_sigterm_right_after_the_last_response_loses_nothing(tmp_path: Path, run: int) -> None:
    cfg = tmp_path / "chronograph.yaml"
    cfg.write_text(CONFIG)
    port_a, port_b = _free_port(), _free_port()
    with OTLPReceiver() as rx:
        b = _start("app_b", port_b, rx, cfg, {})
        a = _start("app_a", port_a, rx, cfg, {"B_URL": f"http://127.0.0.1:{port_b}"})
        try:
            _wait_http(f"http://127.0.0.1:{port_b}/healthz", b)
            _wait_http(f"http://127.0.0.1:{port_a}/healthz", a)
            for n in range(REQUESTS):
                assert requests.get(f"http://127.0.0.1:{port_a}/order/{n}", timeout=20).status_code == 200
        finally:
            for proc in (a, b):  # right after the last response, no flush, no wait
                proc.send_signal(signal.SIGTERM)
            codes = [proc.wait(60) for proc in (a, b)]
        errors = [p.stderr.read().decode() if p.stderr else "" for p in (a, b)]
        # uvicorn re-raises SIGTERM after its graceful shutdown: dying by the signal is its normal exit.
        assert set(codes) <= {0, -signal.SIGTERM}, errors
        assert all("Traceback" not in e for e in errors), errors
        orders = [s for s in rx.spans if s["name"] == "GET /order/{n}"
                  and s.get("kind") == "SPAN_KIND_SERVER"]
        prices = [s for s in rx.spans if s["name"] == "GET /price/{n}/{i}"
                  and s.get("kind") == "SPAN_KIND_SERVER"]
        assert len(orders) == REQUESTS, errors
        assert len(prices) == 3 * REQUESTS, errors
        for lap in (*orders, *prices):
            assert "chronograph.request_id" in lap["attributes"], lap["name"]
        for lap in prices:
            assert lap["attributes"]["chronograph.sector.storage.ms"] >= 0
        traces = {s["traceId"] for s in orders}
        # Every span of every trace: per request, A's server + client spans, B's server spans + db spans.
        for trace_id in traces:
            spans = [s for s in rx.spans if s["traceId"] == trace_id]
            b_db = [s for s in spans if s["attributes"].get("db.system") == "sqlite"]
            assert len(b_db) >= 3, [s["name"] for s in spans]
            a_client = [s for s in spans if s.get("kind") == "SPAN_KIND_CLIENT"
                        and s["resource"]["service.name"] == "app_a"]
            assert len(a_client) == 3
        ids = [s["spanId"] for s in rx.spans]
        assert len(ids) == len(set(ids)), "a span was exported twice"
