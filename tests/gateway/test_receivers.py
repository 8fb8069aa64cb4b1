"""The receivers with real clients on 127.0.0.1: the SDK's OTLP exporters (gRPC and HTTP), raw HTTP
bodies (JSON, gzip), raw gRPC calls; malformed input and the bearer token."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import grpc
import pytest
import requests
from google.rpc import status_pb2
from opentelemetry import baggage, context, trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcSpanExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpSpanExporter
from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageSpanProcessor
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

CHRONO = {"laps": {"decision_wait": "200ms",
                   "identity": {"customer": [{"baggage": "customer.id"}], "tier": [{"baggage": "tier"}]}},
          "sectors": {"rules": [{"name": "storage", "match": {"attribute": "db.system"}},
                                {"name_from": "service.name", "match": {"kind": "SERVER"}}]},
          "billing": {"rates": {"GET /checkout": "0.5"}}}
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture()
def sink() -> Any:
    with GrpcSink() as s:
        yield s


def two_services(front_exporter: Any, back_exporter: Any, traces: int = 1) -> list[str]:
    """Service ``front`` (SERVER root -> CLIENT call) calls ``back`` (SERVER -> a DB CLIENT span), in
    two SDK providers with their own exporters; baggage copied into attributes by the upstream
    BaggageSpanProcessor, as an app would. Returns the trace ids."""
    front = sdk_provider("front", front_exporter)
    back = sdk_provider("back", back_exporter)
    front.add_span_processor(BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS))
    ids = []
    ft, bt = front.get_tracer("front"), back.get_tracer("back")
    for _ in range(traces):
        token = context.attach(baggage.set_baggage("tier", "pro",
                                                   baggage.set_baggage("customer.id", "cus_42")))
        route = {"http.route": "/checkout", "http.request.method": "GET"}
        try:
            with ft.start_as_current_span("GET /checkout", kind=SpanKind.SERVER, attributes=route) as root, \
                    ft.start_as_current_span("GET back", kind=SpanKind.CLIENT):
                ids.append(format(root.get_span_context().trace_id, "032x"))
                with bt.start_as_current_span("GET /stock", kind=SpanKind.SERVER), \
                        bt.start_as_current_span("SELECT stock", kind=SpanKind.CLIENT,
                                                 attributes={"db.system": "sqlite"}):
                    pass
        finally:
            context.detach(token)
    front.shutdown()
    back.shutdown()
    return ids


def test_sdk_exporters_over_grpc_and_http_give_one_annotated_lap_per_trace(tmp_path: Path, sink: GrpcSink
                                                                          ) -> None:
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()}, CHRONO)
    with running_gateway(config) as gw:
        ids = two_services(GrpcSpanExporter(endpoint=f"127.0.0.1:{port_of(gw, 'grpc')}", insecure=True),
                           HttpSpanExporter(endpoint=f"http://127.0.0.1:{port_of(gw, 'http')}/v1/traces"),
                           traces=3)
        wait_for(lambda: len(laps_of(sink.snapshot())) == 3 and len(sink.snapshot()) == 12,
                   what="12 spans and 3 laps at the sink")
        # The lap metrics are a deferred sink: they follow shortly after the laps; an exporter counts
        # sent spans once its export call has returned, just after the sink has them.
        metrics = wait_for(lambda: (text := scrape(gw.telemetry.prometheus_port)) and metric_value(
            text, "chronograph_lap_duration_milliseconds_count", chronograph_command="GET /checkout") == 3
            and metric_value(text, "chronograph_gateway_export_sent_spans_total", exporter="otlp_grpc") >= 12
            and text, what="the lap metrics and the sent spans")
    spans = sink.snapshot()
    for tid in ids:
        in_trace = [s for s in spans if s["trace_id"] == tid]
        assert len(in_trace) == 4, in_trace
        (root,) = laps_of(in_trace)
        a = root["attributes"]
        assert root["name"] == "GET /checkout" and root["resource"]["service.name"] == "front"
        assert a["chronograph.command"] == "GET /checkout"
        assert {k for k in a if k.startswith("chronograph.sector.")} == {
            "chronograph.sector.back.ms", "chronograph.sector.storage.ms"}
        assert (a["chronograph.customer"], a["chronograph.tier"], a["chronograph.cost"]) == ("cus_42", "pro",
                                                                                           "0.5")
        assert a["chronograph.request_id"] == "req_" + root["span_id"]
        others = [s for s in in_trace if s is not root]
        assert not any(k.startswith("chronograph.") for s in others for k in s["attributes"])
        assert {s["resource"]["service.name"] for s in others} == {"front", "back"}
    assert metric_value(metrics, "chronograph_gateway_spans_received_total") == 12
    assert metric_value(metrics, "chronograph_laps_total") == 3
    assert metric_value(metrics, "chronograph_gateway_export_sent_spans_total", exporter="otlp_grpc") == 12


def _request(trace_id: str = "0af7651916cd43dd8448eb211c80319c", span_id: str = "b7ad6b7169203331",
             name: str = "GET /json") -> dict[str, Any]:
    return {"resourceSpans": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": "json-client"}}]},
        "scopeSpans": [{"scope": {"name": "manual"}, "spans": [{
            "traceId": trace_id, "spanId": span_id, "name": name, "kind": 2,
            "startTimeUnixNano": "1763762400000000000", "endTimeUnixNano": "1763762400050000000",
            "attributes": [{"key": "http.route", "value": {"stringValue": "/json"}}]}]}]}]}


def test_http_json_and_gzip_bodies(tmp_path: Path, sink: GrpcSink) -> None:
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()}, CHRONO)
    with running_gateway(config) as gw:
        url = f"http://127.0.0.1:{port_of(gw, 'http')}/v1/traces"
        r = requests.post(url, data=json.dumps(_request()), headers={"Content-Type": "application/json"},
                          timeout=10)
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
        assert r.json() == {}
        body = ExportTraceServiceRequest()
        rs = body.resource_spans.add()
        s = rs.scope_spans.add().spans.add()
        s.trace_id, s.span_id, s.name, s.kind = b"\x01" * 16, b"\x02" * 8, "GET /gzip", 2
        r = requests.post(url, data=gzip.compress(body.SerializeToString()),
                          headers={"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"},
                          timeout=10)
        assert r.status_code == 200 and r.headers["content-type"] == "application/x-protobuf"
        assert ExportTraceServiceResponse.FromString(r.content) == ExportTraceServiceResponse()
        wait_for(lambda: len(laps_of(sink.snapshot())) == 2, what="both laps")
    by_name = {s["name"]: s for s in sink.snapshot()}
    assert by_name["GET /json"]["trace_id"] == "0af7651916cd43dd8448eb211c80319c"
    assert by_name["GET /json"]["attributes"]["chronograph.lap_ms"] == 50.0
    assert by_name["GET /gzip"]["attributes"]["chronograph.lap"] is True


@pytest.mark.parametrize(("body", "headers", "status", "reason"), [
    (b"\xff\xff\xff garbage", {"Content-Type": "application/x-protobuf"}, 400, "not an OTLP protobuf"),
    (b"{not json", {"Content-Type": "application/json"}, 400, "body is not JSON"),
    (json.dumps(_request(trace_id="abc")).encode(), {"Content-Type": "application/json"}, 400,
     "traceId must be 32 hex digits"),
    (b"x", {"Content-Type": "text/plain"}, 400, "unsupported Content-Type"),
    (b"not gzip", {"Content-Type": "application/x-protobuf", "Content-Encoding": "gzip"}, 400,
     "not valid gzip"),
    (b"x", {"Content-Type": "application/x-protobuf", "Content-Encoding": "br"}, 400,
     "unsupported Content-Encoding"),
    (b"\x00" * 5000, {"Content-Type": "application/x-protobuf"}, 413, "body larger than 4096 bytes"),
])
def test_malformed_http_requests_get_a_reason_not_a_traceback(tmp_path: Path, sink: GrpcSink, body: bytes,
                                                               headers: dict[str, str], status: int,
                                                               reason: str) -> None:
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()}, CHRONO,
                          protocols={"http": {"endpoint": "127.0.0.1:0", "max_request_body_size": 4096}})
    with running_gateway(config) as gw:
        r = requests.post(f"http://127.0.0.1:{port_of(gw, 'http')}/v1/traces", data=body, headers=headers,
                          timeout=10)
        assert r.status_code == status, r.content
        if headers["Content-Type"] == "application/json":
            message = r.json()["message"]
            assert r.json()["code"] == 3
        else:
            message = status_pb2.Status.FromString(r.content).message
        assert reason in message, message
        assert "Traceback" not in r.text
        assert metric_value(scrape(gw.telemetry.prometheus_port), "chronograph_gateway_decode_errors_total") \
            == (1 if status == 400 else 0)
        ok = requests.post(f"http://127.0.0.1:{port_of(gw, 'http')}/v1/traces", data=json.dumps(_request()),
                           headers={"Content-Type": "application/json"}, timeout=10)
        assert ok.status_code == 200  # the receiver goes on


def test_other_paths_and_methods(tmp_path: Path, sink: GrpcSink) -> None:
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()}, CHRONO)
    with running_gateway(config) as gw:
        base = f"http://127.0.0.1:{port_of(gw, 'http')}"
        assert requests.get(f"{base}/v1/traces", timeout=10).status_code == 405
        r = requests.post(f"{base}/v1/metrics", data=b"", timeout=10,
                          headers={"Content-Type": "application/x-protobuf"})
        assert r.status_code == 404 and b"traces only" in r.content


def _raw_call(port: int, body: bytes, metadata: tuple[tuple[str, str], ...] = ()) -> grpc.RpcError | None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(EXPORT, request_serializer=None,
                                   response_deserializer=ExportTraceServiceResponse.FromString)
        try:
            call(body, timeout=10, metadata=metadata)
        except grpc.RpcError as exc:
            return exc
    return None


def test_malformed_grpc_requests_are_invalid_argument(tmp_path: Path, sink: GrpcSink) -> None:
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()}, CHRONO)
    bad_id = ExportTraceServiceRequest()
    s = bad_id.resource_spans.add().scope_spans.add().spans.add()
    s.trace_id, s.span_id = b"\x01\x02\x03", b"\x02" * 8
    with running_gateway(config) as gw:
        port = port_of(gw, "grpc")
        for body, reason in ((bad_id.SerializeToString(), "trace_id must be 16 bytes, got 3"),
                             (b"\xff\xff\xff garbage", "not an OTLP protobuf ExportTraceServiceRequest")):
            err = _raw_call(port, body)
            assert err is not None and err.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert reason in err.details() and "Traceback" not in err.details()
        assert _raw_call(port, ExportTraceServiceRequest().SerializeToString()) is None
        assert gw.decode_errors == 2


def test_bearer_token_over_http_and_grpc(tmp_path: Path, sink: GrpcSink) -> None:
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()}, CHRONO)
    with running_gateway(config, token="s3cret") as gw:
        url = f"http://127.0.0.1:{port_of(gw, 'http')}/v1/traces"
        body = json.dumps(_request()).encode()
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            r = requests.post(url, data=body, headers={"Content-Type": "application/json", **headers},
                              timeout=10)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
        port = port_of(gw, "grpc")
        for metadata in ((), (("authorization", "Bearer wrong"),)):
            err = _raw_call(port, ExportTraceServiceRequest().SerializeToString(), metadata)
            assert err is not None and err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert gw.received_spans == 0
        auth = {"authorization": "Bearer s3cret"}
        two_services(GrpcSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True, headers=auth),
                     HttpSpanExporter(endpoint=url, headers=auth))
        wait_for(lambda: len(sink.snapshot()) == 4 and laps_of(sink.snapshot()), what="the lap")


def test_receivers_bind_localhost_by_default(tmp_path: Path) -> None:
    from otel_chronograph.gateway import load_gateway_config

    doc = write_config(tmp_path, {"nop": {}}, protocols={"grpc": None, "http": None})
    cfg = load_gateway_config(doc, environ={})
    assert [p.endpoint for p in cfg.grpc_endpoints()] == ["127.0.0.1:5317"]
    assert [p.endpoint for p in cfg.http_endpoints()] == ["127.0.0.1:5318"]


def test_no_trace_is_lost_for_a_span_without_a_lap(tmp_path: Path, sink: GrpcSink) -> None:
    """A trace whose spans all have remote parents (a fragment) is still forwarded whole."""
    config = write_config(tmp_path, {"otlp_grpc": sink.exporter()}, {"laps": {"decision_wait": "100ms"}})
    with running_gateway(config) as gw:
        provider = sdk_provider("frag", GrpcSpanExporter(endpoint=f"127.0.0.1:{port_of(gw, 'grpc')}",
                                                        insecure=True))
        remote = trace.set_span_in_context(trace.NonRecordingSpan(trace.SpanContext(
            0xAB, 0xCD, is_remote=True, trace_flags=trace.TraceFlags(1))))
        with provider.get_tracer("t").start_as_current_span("child", context=remote):
            pass
        provider.shutdown()
        wait_for(lambda: len(sink.snapshot()) == 1, what="the span")
    (span,) = sink.snapshot()
    assert span["attributes"]["chronograph.lap"] is True  # trace scope: the fragment's top is its root
