"""The exporters against real servers: OTLP/HTTP (protobuf and JSON, gzip) to a real HTTP receiver,
OTLP/gRPC retries (transient errors, RetryInfo, permanent errors counted), the file exporter read back
by ``chronograph derive``, and the debug exporter."""

from __future__ import annotations

import json
import logging
import subprocess
import time
from pathlib import Path

import grpc
import pytest
import requests

from tests.core.helpers import wait_for
from tests.otlp_receiver import OTLPReceiver

from .helpers import CHRONOGRAPH, GrpcSink, port_of, running_gateway, write_config
from .test_backpressure import one_trace, post

FAST = {"laps": {"decision_wait": "50ms"}}


@pytest.mark.parametrize("encoding", ["proto", "json"])
def test_otlp_http_exporter_to_a_real_receiver(tmp_path: Path, encoding: str) -> None:
    with OTLPReceiver() as rx:
        exporter = {"endpoint": rx.endpoint, "encoding": encoding, "compression": "gzip"}
        with running_gateway(write_config(tmp_path, {"otlp_http": exporter}, FAST)) as gw:
            assert post(port_of(gw, "http"), one_trace(5, spans=3)).status_code == 200
            rx.wait_for(lambda: len(rx.spans) == 3, what="three spans")
            # the receiver has the spans before the exporter call returns and counts them
            wait_for(lambda: gw.queues[0].sent_spans == 3, what="three spans counted as sent")
    roots = [s for s in rx.spans if "chronograph.lap_ms" in s["attributes"]]
    assert len(roots) == 1 and roots[0]["name"] == "op 5"


def test_otlp_grpc_exporter_retries_transient_errors_and_honours_retry_info(tmp_path: Path) -> None:
    with GrpcSink() as sink:
        sink.fail_with, sink.fail_times, sink.retry_after = grpc.StatusCode.RESOURCE_EXHAUSTED, 1, 1
        config = write_config(tmp_path, {"otlp_grpc": sink.exporter()}, FAST)
        with running_gateway(config) as gw:
            started = time.monotonic()
            assert post(port_of(gw, "http"), one_trace(1)).status_code == 200
            wait_for(lambda: len(sink.snapshot()) == 1, what="the span after the retry")
            assert time.monotonic() - started >= 1.0  # waited what the server asked, not 50 ms
            sink.fail_with, sink.fail_times, sink.retry_after = grpc.StatusCode.UNAVAILABLE, 3, None
            assert post(port_of(gw, "http"), one_trace(2)).status_code == 200
            wait_for(lambda: len(sink.snapshot()) == 2, what="the span after three retries")
            wait_for(lambda: gw.queues[0].sent_spans == 2, what="both spans counted as sent")
            assert gw.queues[0].failed_spans == 0
            assert sink.calls == 6


def test_a_permanent_error_is_counted_not_retried(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with GrpcSink() as sink:
        sink.fail_with, sink.fail_times = grpc.StatusCode.INVALID_ARGUMENT, 1
        with running_gateway(write_config(tmp_path, {"otlp_grpc": sink.exporter()}, FAST)) as gw:
            assert post(port_of(gw, "http"), one_trace(1, spans=2)).status_code == 200
            wait_for(lambda: gw.queues[0].failed_spans == 2, what="the failure counted")
            assert sink.calls == 1 and sink.snapshot() == []
    assert "exporter otlp_grpc dropped 2 spans (INVALID_ARGUMENT" in caplog.text


@pytest.mark.parametrize("fmt", ["json", "proto"])
def test_file_exporter_output_is_read_back_by_chronograph_derive(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / f"traces.{fmt}"
    config = write_config(tmp_path, {"file": {"path": str(out), "format": fmt}},
                          {**FAST, "recorder": {"enabled": False}})
    with running_gateway(config) as gw:
        for n in (1, 2):
            assert post(port_of(gw, "http"), one_trace(n, spans=3)).status_code == 200
        wait_for(lambda: gw.queues[0].sent_spans == 6, what="six spans written")
    if fmt == "json":
        first = json.loads(out.read_text().splitlines()[0])
        span = first["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
        assert len(span["traceId"]) == 32 and isinstance(span["kind"], int)  # OTLP JSON: hex ids, int enums
    derived = subprocess.run([CHRONOGRAPH, "derive", "--format", "json", str(out)], capture_output=True,
                             text=True, timeout=120, check=False)
    assert derived.returncode == 0, derived.stderr
    laps = [json.loads(line) for line in derived.stdout.splitlines()]
    assert sorted(lap["command"] for lap in laps) == ["op 1", "op 2"]


def test_debug_exporter_logs_spans(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="otel_chronograph.gateway")
    config = write_config(tmp_path, {"debug": {"verbosity": "normal"}}, FAST)
    with running_gateway(config) as gw:
        assert post(port_of(gw, "http"), one_trace(3)).status_code == 200
        wait_for(lambda: gw.queues[0].sent_spans == 1, what="the span logged")
    assert "op 3 [lap]" in caplog.text


def test_exporter_unreachable_at_shutdown_is_counted(tmp_path: Path) -> None:
    """Shutdown does not wait forever for a next hop that is down: what is left is counted."""
    with GrpcSink() as sink:
        endpoint = sink.endpoint
    exporter = {"endpoint": endpoint, "tls": {"insecure": True},
                "retry_on_failure": {"initial_interval": "30s", "max_elapsed_time": "0s"}}
    config = write_config(tmp_path, {"otlp_grpc": exporter}, FAST)
    from otel_chronograph._worker import Deadline
    from otel_chronograph.gateway import Gateway, load_gateway_config

    gw = Gateway(load_gateway_config(config, environ={}))
    gw.start()
    assert requests.post(f"http://127.0.0.1:{port_of(gw, 'http')}/v1/traces",
                         data=one_trace(1).SerializeToString(),
                         headers={"Content-Type": "application/x-protobuf"}, timeout=10).status_code == 200
    wait_for(lambda: gw.engine.laps_derived == 1, what="the lap")
    started = time.monotonic()
    assert gw.stop(Deadline(2.0)) is False
    assert time.monotonic() - started < 10
    assert gw.queues[0].failed_spans == 1


def test_metrics_go_out_through_the_metrics_pipeline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import yaml

    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
    with OTLPReceiver() as rx:
        config = write_config(tmp_path, {"otlp_http": {"endpoint": rx.endpoint}}, FAST, metrics_endpoint=None)
        doc = yaml.safe_load(config.read_text())
        doc["service"]["pipelines"]["metrics"] = {"exporters": ["otlp_http"]}
        config.write_text(yaml.safe_dump(doc))
        with running_gateway(config) as gw:
            assert post(port_of(gw, "http"), one_trace(4, spans=2)).status_code == 200
            rx.wait_for(lambda: bool(rx.metric("chronograph.lap.duration")) and any(
                m["sum"]["dataPoints"][0].get("asInt") == "2"
                for m in rx.metric("chronograph.gateway.spans.received")), what="lap and gateway metrics")
            assert rx.metric("chronograph.pending_traces")
