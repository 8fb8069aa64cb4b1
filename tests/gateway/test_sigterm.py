"""SIGTERM on a real ``chronograph gateway`` process: it stops receiving, derives every pending trace,
forwards everything (lap roots annotated), flushes and exits 0."""

from __future__ import annotations

import signal
from pathlib import Path

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.trace import SpanKind

from tests.core.helpers import wait_for
from tests.e2e import peers

from .helpers import GrpcSink, laps_of, metric_value, sdk_provider, write_config

ENV_PROTOCOLS = {"grpc": {"endpoint": "${env:CHRONOGRAPH_GATEWAY_GRPC_ENDPOINT}"},
                 "http": {"endpoint": "${env:CHRONOGRAPH_GATEWAY_HTTP_ENDPOINT}"}}
ENV_METRICS = "${env:CHRONOGRAPH_GATEWAY_TELEMETRY_ENDPOINT}"


def test_sigterm_derives_and_forwards_everything_pending(tmp_path: Path) -> None:
    with GrpcSink() as sink:
        config = write_config(tmp_path, {"otlp_grpc": sink.exporter()},
                              {"laps": {"decision_wait": "10m"}, "recorder": {"enabled": False}},
                              metrics_endpoint=ENV_METRICS, protocols=ENV_PROTOCOLS)
        gateway = peers.start_gateway(tmp_path / "gw", config)
        try:
            exporter = GrpcSpanExporter(endpoint=gateway.otlp_grpc_endpoint, insecure=True)
            provider = sdk_provider("svc", exporter)
            tracer = provider.get_tracer("t")
            for i in range(5):
                with tracer.start_as_current_span(f"GET /{i}", kind=SpanKind.SERVER), \
                        tracer.start_as_current_span("work"):
                    pass
            provider.shutdown()
            received = "chronograph_gateway_spans_received_total"
            wait_for(lambda: metric_value(gateway.scrape(), received) == 10,
                       what="the gateway to hold all ten spans")
            assert metric_value(gateway.scrape(), "chronograph_pending_traces") == 5
            assert sink.snapshot() == []  # decision_wait is ten minutes: nothing went out yet
            assert gateway.proc is not None
            gateway.proc.send_signal(signal.SIGTERM)
            assert gateway.proc.wait(timeout=30) == 0, gateway.log_tail()
        finally:
            gateway.stop()
        spans = sink.snapshot()
    assert len(spans) == 10
    assert sorted(s["name"] for s in laps_of(spans)) == [f"GET /{i}" for i in range(5)]
    log = gateway.log_path.read_text()
    assert "5 traces derived at shutdown" in log and "Traceback" not in log


def test_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    import socket
    import subprocess

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path, {"nop": {}}, metrics_endpoint=None,
                              protocols={"http": {"endpoint": f"127.0.0.1:{port}"}})
        result = subprocess.run([str(peers.CHRONOGRAPH_BIN), "gateway", "--config", str(config)],
                                capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == \
        f"chronograph gateway: cannot listen for OTLP/HTTP on 127.0.0.1:{port} (address in use?)"
    assert "Traceback" not in result.stderr
