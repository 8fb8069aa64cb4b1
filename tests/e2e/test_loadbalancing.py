"""collector-config/loadbalancing.yaml on the built Collector: whole traces to one gateway each, a
gateway that is down gets its share when back, and backpressure (RESOURCE_EXHAUSTED) retried.

The gateways are stood in for by real OTLP/gRPC trace services in this process (grpcio, 127.0.0.1)
that record what they accept and can refuse requests as a gateway at its pending-trace bound does.
The apps are plain SDK pipelines of two services exporting every span in its own request, so a
trace's spans reach the load-balancing Collector separately and from different resources.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import peers
import pytest
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

pytestmark = pytest.mark.e2e

DEADLINE = 60.0
SPANS_PER_TRACE = 3


def push_traces(endpoint: str, n: int) -> dict[str, set[str]]:
    """``n`` traces across services lb-front and lb-back, one request per span; trace id -> span ids."""
    providers = [
        TracerProvider(resource=Resource.create({"service.name": name})) for name in ("lb-front", "lb-back")
    ]
    for provider in providers:
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://{endpoint}", insecure=True))
        )
    front, back = (p.get_tracer("loadbalancing-test") for p in providers)
    sent: dict[str, set[str]] = {}
    try:
        for i in range(n):
            with front.start_as_current_span(f"GET /items/{i}", kind=SpanKind.SERVER) as root:
                ids = {root.get_span_context().span_id}
                for _ in range(SPANS_PER_TRACE - 1):
                    with back.start_as_current_span("SELECT items", kind=SpanKind.SERVER) as child:
                        ids.add(child.get_span_context().span_id)
            sent[format(root.get_span_context().trace_id, "032x")] = {format(s, "016x") for s in ids}
    finally:
        for provider in providers:
            provider.shutdown()
    return sent


class TraceBackend(trace_service_pb2_grpc.TraceServiceServicer):
    """A real OTLP/gRPC trace service on 127.0.0.1 standing in for a gateway: records the spans it
    accepts, and refuses the first ``reject`` requests with RESOURCE_EXHAUSTED as a gateway at its
    pending-trace bound does (with a RetryInfo delay when ``retry_info``)."""

    def __init__(self, reject: int = 0, retry_info: bool = True, port: int = 0) -> None:
        self.reject = reject
        self.retry_info = retry_info
        self.rejected = 0
        self.spans: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self.server)
        self.port = self.server.add_insecure_port(f"127.0.0.1:{port}")
        self.server.start()

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def received(self) -> dict[str, list[str]]:
        """trace id -> span ids (duplicates kept)."""
        out: dict[str, list[str]] = defaultdict(list)
        with self.lock:
            for trace_id, span_id in self.spans:
                out[trace_id].append(span_id)
        return out

    def stop(self) -> None:
        self.server.stop(grace=None)

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: grpc.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self.lock:
            if self.rejected < self.reject:
                self.rejected += 1
                message = "pending traces at max_pending_traces"
                if self.retry_info:
                    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=message)
                    detail = any_pb2.Any()
                    detail.Pack(
                        error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(nanos=200_000_000))
                    )
                    status.details.append(detail)
                    context.set_trailing_metadata((("grpc-status-details-bin", status.SerializeToString()),))
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, message)
            for rs in request.resource_spans:
                for ss in rs.scope_spans:
                    self.spans.extend((s.trace_id.hex(), s.span_id.hex()) for s in ss.spans)
        return trace_service_pb2.ExportTraceServiceResponse()


@contextlib.contextmanager
def load_balancer(tmp_path: Path, gateways: str) -> Iterator[peers.Collector]:
    """The built Collector with loadbalancing.yaml, CHRONOGRAPH_GATEWAYS=``gateways``."""
    lb = peers.start_collector(
        tmp_path / "lb", "loadbalancing.yaml", extra_env={"CHRONOGRAPH_GATEWAYS": gateways}
    )
    try:
        yield lb
    except BaseException:
        print(lb.log_tail(60))
        raise
    finally:
        lb.stop()


def wait_for_all(lb: peers.Collector, backends: list[TraceBackend], total: int) -> list[dict[str, list[str]]]:
    def arrived() -> list[dict[str, list[str]]] | None:
        got = [b.received() for b in backends]
        return got if sum(len(ids) for g in got for ids in g.values()) >= total else None

    got: list[dict[str, list[str]]] = peers.wait_until(
        arrived, DEADLINE, f"{total} spans at the backends", on_poll=lb.check_alive
    )
    return got


def assert_whole_traces_once(sent: dict[str, set[str]], got: list[dict[str, list[str]]]) -> None:
    """Every trace at exactly one backend, all its spans, none twice; every backend got a share."""
    for trace_id, span_ids in sent.items():
        holders = [i for i, g in enumerate(got) if trace_id in g]
        assert len(holders) == 1, f"trace {trace_id} at backends {holders}"
        received = got[holders[0]][trace_id]
        assert sorted(received) == sorted(span_ids), f"trace {trace_id}: sent {span_ids}, got {received}"
    assert set().union(*(g.keys() for g in got)) == set(sent)
    assert all(got), f"a backend received no trace: {[len(g) for g in got]}"


@pytest.fixture()
def backends() -> Iterator[list[TraceBackend]]:
    started = [TraceBackend(), TraceBackend()]
    try:
        yield started
    finally:
        for backend in started:
            backend.stop()


def test_every_trace_goes_whole_to_exactly_one_gateway(
    tmp_path: Path, collector_bin: Path, backends: list[TraceBackend]
) -> None:
    with load_balancer(tmp_path, ",".join(b.endpoint for b in backends)) as lb:
        sent = push_traces(lb.otlp_grpc_endpoint, 30)
        got = wait_for_all(lb, backends, len(sent) * SPANS_PER_TRACE)
        assert lb.self_metric("otelcol_loadbalancer_num_backends") == 2
    assert_whole_traces_once(sent, got)


def test_a_gateway_down_gets_its_share_when_back(tmp_path: Path, collector_bin: Path) -> None:
    """While one gateway is down the other keeps receiving its share; the down one's share waits in
    its queue and arrives, complete and once, when it comes back."""
    up = TraceBackend()
    down_port = peers.free_port()
    back: TraceBackend | None = None
    try:
        with load_balancer(tmp_path, f"{up.endpoint},127.0.0.1:{down_port}") as lb:
            sent = push_traces(lb.otlp_grpc_endpoint, 30)
            up_share = peers.wait_until(
                lambda: (r := up.received()) and 0 < len(r) < len(sent) and r,
                DEADLINE,
                "the running gateway's share",
                on_poll=lb.check_alive,
            )
            assert all(len(ids) == SPANS_PER_TRACE for ids in up_share.values()), up_share
            assert lb.self_metric("otelcol_receiver_refused_spans") == 0
            back = TraceBackend(port=down_port)
            got = wait_for_all(lb, [up, back], len(sent) * SPANS_PER_TRACE)
            assert got[0] == up_share
        assert_whole_traces_once(sent, got)
    finally:
        up.stop()
        if back is not None:
            back.stop()


def one_trace_request(i: int, spans: int) -> tuple[str, trace_service_pb2.ExportTraceServiceRequest]:
    """An OTLP request holding one whole trace of ``spans`` spans; (trace id hex, request)."""
    trace_id = os.urandom(16)
    now = time.time_ns()
    service = common_pb2.KeyValue(key="service.name", value=common_pb2.AnyValue(string_value="lb-raw"))
    resource_spans = trace_pb2.ResourceSpans(
        resource=resource_pb2.Resource(attributes=[service]),
        scope_spans=[
            trace_pb2.ScopeSpans(
                spans=[
                    trace_pb2.Span(
                        trace_id=trace_id, span_id=os.urandom(8), name=f"request {i}.{j}",
                        start_time_unix_nano=now, end_time_unix_nano=now + 1_000_000,
                    )
                    for j in range(spans)
                ]
            )
        ],
    )
    return trace_id.hex(), trace_service_pb2.ExportTraceServiceRequest(resource_spans=[resource_spans])


def test_a_full_gateway_queue_refuses_and_counts(tmp_path: Path, collector_bin: Path) -> None:
    """A gateway that stays down fills its queue; from then on the requests bringing its traces are
    refused to the app and counted; nothing else is lost: every span is delivered (the down one's
    queued share once it is back) or was refused to its sender."""
    up = TraceBackend()
    down_port = peers.free_port()
    back: TraceBackend | None = None
    # The smallest queue the batch settings allow (min_size 2048 <= queue_size), and big traces.
    spans = 200
    env = {
        "CHRONOGRAPH_GATEWAYS": f"{up.endpoint},127.0.0.1:{down_port}",
        "CHRONOGRAPH_GATEWAY_QUEUE_SPANS": "2048",
    }
    lb = peers.start_collector(tmp_path / "lb", "loadbalancing.yaml", extra_env=env)
    try:
        refused: set[str] = set()
        accepted: set[str] = set()
        with grpc.insecure_channel(lb.otlp_grpc_endpoint) as channel:
            stub = trace_service_pb2_grpc.TraceServiceStub(channel)
            for i in range(40):
                trace_id, request = one_trace_request(i, spans)
                try:
                    stub.Export(request, timeout=10)
                    accepted.add(trace_id)
                except grpc.RpcError as e:
                    assert e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED), e
                    refused.add(trace_id)
        assert refused, "the down gateway's queue never filled"
        assert accepted, "nothing was accepted, not even the running gateway's share"
        assert lb.self_metric("otelcol_receiver_refused_spans") == len(refused) * spans
        back = TraceBackend(port=down_port)
        got = wait_for_all(lb, [up, back], len(accepted) * spans)
        assert set(got[0]) | set(got[1]) == accepted
        assert got[0] and got[1] and not set(got[0]) & set(got[1])
        assert all(len(set(ids)) == len(ids) == spans for g in got for ids in g.values())
    except BaseException:
        print(lb.log_tail(60))
        raise
    finally:
        lb.stop()
        up.stop()
        if back is not None:
            back.stop()


def test_resource_exhausted_with_retry_info_is_retried(tmp_path: Path, collector_bin: Path) -> None:
    backend = TraceBackend(reject=2, retry_info=True)
    try:
        with load_balancer(tmp_path, f"[{backend.endpoint}]") as lb:  # the YAML list form
            sent = push_traces(lb.otlp_grpc_endpoint, 10)
            got = wait_for_all(lb, [backend], len(sent) * SPANS_PER_TRACE)
            assert backend.rejected == 2
        assert_whole_traces_once(sent, got)
    finally:
        backend.stop()


def test_resource_exhausted_without_retry_info_is_dropped_and_logged(
    tmp_path: Path, collector_bin: Path
) -> None:
    """The contract a gateway must keep: the Collector's OTLP exporter treats RESOURCE_EXHAUSTED
    without RetryInfo as permanent and drops the batch (only an error log says so)."""
    backend = TraceBackend(reject=1, retry_info=False)
    try:
        with load_balancer(tmp_path, backend.endpoint) as lb:
            sent = push_traces(lb.otlp_grpc_endpoint, 10)
            total = len(sent) * SPANS_PER_TRACE

            def dropped() -> int:
                found = re.findall(r'Dropping data\..*"dropped_items": (\d+)', lb.log_path.read_text())
                return sum(int(n) for n in found)

            peers.wait_until(
                lambda: dropped() + len(backend.spans) >= total, DEADLINE, "spans delivered or dropped",
                on_poll=lb.check_alive,
            )
            assert backend.rejected == 1
            assert dropped() > 0
            assert dropped() + len(backend.spans) == total
    finally:
        backend.stop()
