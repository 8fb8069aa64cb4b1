"""Bounded memory without dropping: at ``max_pending_traces`` or with a full export queue the gateway
refuses (RESOURCE_EXHAUSTED with RetryInfo / 429 or 503 with Retry-After), accepts again once drained,
and a sender's retry gets everything through."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.trace import SpanKind

from tests.core.helpers import wait_for

from .helpers import (
    GrpcSink,
    laps_of,
    metric_value,
    port_of,
    running_gateway,
    scrape,
    sdk_provider,
    write_config,
)

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def one_trace(n: int, spans: int = 1) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    scope = request.resource_spans.add().scope_spans.add()
    for i in range(spans):
        s = scope.spans.add()
        s.trace_id, s.span_id = n.to_bytes(16, "big"), (n * 1000 + i + 1).to_bytes(8, "big")
        s.name, s.kind = f"op {n}", 2
        if i:
            s.parent_span_id = (n * 1000 + 1).to_bytes(8, "big")
    return request


def post(port: int, request: ExportTraceServiceRequest) -> requests.Response:
    return requests.post(f"http://127.0.0.1:{port}/v1/traces", data=request.SerializeToString(),
                         headers={"Content-Type": "application/x-protobuf"}, timeout=10)


def grpc_export(port: int, request: ExportTraceServiceRequest) -> grpc.RpcError | None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None,
                                   response_deserializer=ExportTraceServiceResponse.FromString)
        try:
            call(request.SerializeToString(), timeout=10)
        except grpc.RpcError as exc:
            return exc
    return None


def retry_info(err: Any) -> tuple[float, float]:
    """(RetryInfo seconds inside grpc-status-details-bin, the same as google.rpc.retryinfo-bin)."""
    md = dict(err.trailing_metadata())
    status = status_pb2.Status.FromString(md["grpc-status-details-bin"])
    info = error_details_pb2.RetryInfo()
    assert status.details[0].Unpack(info)
    direct = error_details_pb2.RetryInfo.FromString(md["google.rpc.retryinfo-bin"])
    return info.retry_delay.seconds, direct.retry_delay.seconds


@pytest.fixture()
def sink() -> Any:
    with GrpcSink() as s:
        yield s


def test_at_the_pending_bound_new_traces_are_refused_then_accepted_when_drained(tmp_path: Path,
                                                                                sink: GrpcSink) -> None:
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()},
                          {"laps": {"decision_wait": "1500ms", "max_pending_traces": 2}})
    with running_gateway(config) as gw:
        http, grpc_port = port_of(gw, "http"), port_of(gw, "grpc")
        assert post(http, one_trace(1)).status_code == 200
        assert post(http, one_trace(2)).status_code == 200
        refused = post(http, one_trace(3))
        assert refused.status_code == 429, refused.content
        assert int(refused.headers["Retry-After"]) >= 1
        status = status_pb2.Status.FromString(refused.content)
        assert status.code == 8 and "max_pending_traces" in status.message
        err = grpc_export(grpc_port, one_trace(4))
        assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert min(retry_info(err)) >= 1
        # More spans of a trace already pending are not a new trace: accepted.
        more = one_trace(1, spans=3)
        del more.resource_spans[0].scope_spans[0].spans[0]
        assert post(http, more).status_code == 200
        assert not sink.snapshot()  # nothing accepted was dropped or sent early
        wait_for(lambda: len(gw.buffer) == 0, what="the pending traces decided")
        assert post(http, one_trace(3)).status_code == 200
        assert grpc_export(grpc_port, one_trace(4)) is None
        wait_for(lambda: len(laps_of(sink.snapshot())) == 4, what="four laps")
        text = scrape(gw.telemetry.prometheus_port)
    assert metric_value(text, "chronograph_gateway_rejected_spans_total", reason="pending") == 2
    assert sorted(s["name"] for s in sink.snapshot()) == ["op 1", "op 1", "op 1", "op 2", "op 3", "op 4"]


def test_a_gateway_that_falls_behind_refuses_new_traces_until_it_catches_up(tmp_path: Path,
                                                                          sink: GrpcSink) -> None:
    """Unit-level: the worker's lag is set by hand (making it CPU-bound for real would be slow)."""
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()}, {"laps": {"decision_wait": "1s"}})
    with running_gateway(config) as gw:
        http = port_of(gw, "http")
        assert post(http, one_trace(1)).status_code == 200
        gw.lag_s = gw.max_lag_s + 1  # as if deciding 2 s late
        refused = post(http, one_trace(2))
        assert refused.status_code == 429
        assert "decides traces 2.0s late" in status_pb2.Status.FromString(refused.content).message
        more = one_trace(1, spans=2)
        del more.resource_spans[0].scope_spans[0].spans[0]
        assert post(http, more).status_code == 200  # spans of a pending trace are still taken
        wait_for(lambda: gw.lag_s <= gw.max_lag_s, what="the worker to catch up")  # it measures again
        assert post(http, one_trace(2)).status_code == 200


def test_the_sdk_exporter_retries_until_the_gateway_has_room(tmp_path: Path, sink: GrpcSink) -> None:
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()},
                          {"laps": {"decision_wait": "300ms", "max_pending_traces": 1}})
    with running_gateway(config) as gw:
        provider = sdk_provider("client", HttpSpanExporter(
            endpoint=f"http://127.0.0.1:{port_of(gw, 'http')}/v1/traces", timeout=30))
        tracer = provider.get_tracer("t")

        def send() -> None:
            for i in range(5):  # five traces, one request each, into a gateway with room for one
                with tracer.start_as_current_span(f"GET /{i}", kind=SpanKind.SERVER):
                    pass

        sender = threading.Thread(target=send)
        sender.start()
        sender.join(60)
        provider.shutdown()
        wait_for(lambda: len(laps_of(sink.snapshot())) == 5, 30, what="all five laps")
        assert sum(gw.rejected.values()) >= 1  # backpressure happened, and cost nothing
    assert sorted(s["name"] for s in sink.snapshot()) == [f"GET /{i}" for i in range(5)]


def test_a_full_export_queue_refuses_until_the_next_hop_is_back(tmp_path: Path, sink: GrpcSink) -> None:
    sink.fail_with, sink.fail_times = grpc.StatusCode.UNAVAILABLE, 10**6
    exporter = sink.exporter(sending_queue={"queue_size": 1, "num_consumers": 1},
                             retry_on_failure={"initial_interval": "100ms", "max_interval": "200ms",
                                               "max_elapsed_time": "60s"})
    config = write_config(tmp_path, {"otlp_grpc": exporter}, {"laps": {"decision_wait": "10ms"}})
    with running_gateway(config) as gw:
        http = port_of(gw, "http")
        accepted = 0
        n = 0
        while True:  # fill: one request in flight (retrying), one queued, then refusals
            n += 1
            r = post(http, one_trace(n))
            if r.status_code == 503:
                break
            assert r.status_code == 200
            accepted += 1
            # Decided, and the first request taken by the consumer (retrying at the sink): the queue is
            # only full once that one is in flight and the next waits behind it, not in the moment
            # between the first put and the consumer picking it up.
            wait_for(lambda: len(gw.buffer) == 0 and sink.calls >= 1, what="the trace decided, one in flight")
            assert n < 50, "the queue never filled"
        assert int(r.headers["Retry-After"]) >= 1
        assert "sending queue is full" in status_pb2.Status.FromString(r.content).message
        err = grpc_export(port_of(gw, "grpc"), one_trace(n + 1))
        assert err is not None and err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        sink.fail_times = 0  # the next hop is back: the retries deliver, the queue drains
        wait_for(lambda: len(sink.snapshot()) == accepted, what="the retried spans delivered")
        wait_for(lambda: post(http, one_trace(n)).status_code == 200, what="room again")
        wait_for(lambda: len(sink.snapshot()) == accepted + 1, what="the last trace")
        assert gw.queues[0].failed_spans == 0
        text = scrape(gw.telemetry.prometheus_port)
    assert metric_value(text, "chronograph_gateway_rejected_spans_total", reason="queue") >= 1


def test_spans_over_the_per_trace_limit_are_forwarded_at_once_and_the_lap_marked(tmp_path: Path,
                                                                                sink: GrpcSink) -> None:
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()},
                          {"laps": {"decision_wait": "300ms", "max_spans_per_trace": 3}})
    with running_gateway(config) as gw:
        assert post(port_of(gw, "http"), one_trace(7, spans=5)).status_code == 200
        wait_for(lambda: len(sink.snapshot()) == 2, what="the two spans over the limit, at once")
        assert not laps_of(sink.snapshot())
        wait_for(lambda: len(sink.snapshot()) == 5, what="the rest, with the lap")
        assert gw.buffer.stats.dropped_spans == 2


def test_late_spans_are_forwarded_unchanged_and_counted(tmp_path: Path, sink: GrpcSink) -> None:
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()}, {"laps": {"decision_wait": "100ms"}})
    with running_gateway(config) as gw:
        http = port_of(gw, "http")
        first = one_trace(9, spans=2)
        late = one_trace(9, spans=3)
        del late.resource_spans[0].scope_spans[0].spans[:2]
        assert post(http, first).status_code == 200
        wait_for(lambda: len(laps_of(sink.snapshot())) == 1, what="the lap")
        assert post(http, late).status_code == 200
        wait_for(lambda: len(sink.snapshot()) == 3, what="the late span")
        text = scrape(gw.telemetry.prometheus_port)
    late_span = [s for s in sink.snapshot() if s["span_id"] == (9003).to_bytes(8, "big").hex()]
    assert late_span and not any(k.startswith("chronograph.") for k in late_span[0]["attributes"])
    assert metric_value(text, "chronograph_late_spans_total") == 1
    assert len(laps_of(sink.snapshot())) == 1  # not derived twice


def test_a_retried_request_is_derived_once_and_its_spans_forwarded_once(tmp_path: Path,
                                                                        sink: GrpcSink) -> None:
    """At-least-once delivery: the Collector re-sends a request whose answer it did not get (a timeout,
    a gateway restarting); a span seen again while its trace is pending is kept once."""
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()}, {"laps": {"decision_wait": "300ms"}})
    with running_gateway(config) as gw:
        grpc_port, http = port_of(gw, "grpc"), port_of(gw, "http")
        request = one_trace(11, spans=3)
        assert grpc_export(grpc_port, request) is None
        assert post(http, request).status_code == 200
        assert grpc_export(grpc_port, request) is None
        wait_for(lambda: len(laps_of(sink.snapshot())) == 1, what="the lap")
        wait_for(lambda: gw.queues[0].sent_spans == 3, what="the spans, sent")
        text = scrape(gw.telemetry.prometheus_port)
    assert sorted(s["span_id"] for s in sink.snapshot()) == sorted(
        (11000 + i).to_bytes(8, "big").hex() for i in (1, 2, 3))
    assert metric_value(text, "chronograph_duplicate_spans_total") == 6
    assert gw.engine.laps_derived == 1


def test_json_refusal_body(tmp_path: Path, sink: GrpcSink) -> None:
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()},
                          {"laps": {"decision_wait": "5s", "max_pending_traces": 1}})
    with running_gateway(config) as gw:
        url = f"http://127.0.0.1:{port_of(gw, 'http')}/v1/traces"
        for n, expected in ((1, 200), (2, 429)):
            doc = {"resourceSpans": [{"scopeSpans": [{"spans": [
                {"traceId": f"{n:032x}", "spanId": f"{n:016x}", "name": "x"}]}]}]}
            r = requests.post(url, data=json.dumps(doc), headers={"Content-Type": "application/json"},
                              timeout=10)
            assert r.status_code == expected
        assert r.json()["code"] == 8 and "retry later" in r.json()["message"]
