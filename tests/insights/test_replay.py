"""``insights replay`` without peers: ids remapped consistently, times shifted to now, the speed
factor, bounded requests, both transports (an in-process OTLP gRPC and HTTP receiver) and clean errors;
and end to end: replayed into the real Collector (collector-config/gateway.yaml) -> Jaeger, the traces
show again with new ids, and the spanmetrics series the ``monitor`` rules select exist in Prometheus."""

from __future__ import annotations

import http.server
import itertools
import random
import sys
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.trace import SpanKind

from otel_chronograph.engine import SpanRecord
from otel_chronograph.insights._cli import insights
from otel_chronograph.insights._replay import IdRemap, Replayer
from otel_chronograph.insights._traces import stored_traces
from otel_chronograph.sources import records_from_proto
from tests.insights.helpers import EPOCH_NS, span, store, write_otlp_json

NOW_NS = 1_800_000_000 * 10**9


class Collecting:
    """A Sender that keeps the requests (as decoded records)."""

    def __init__(self) -> None:
        self.requests: list[list[SpanRecord]] = []

    def send(self, request: Any) -> int:
        copy = trace_service_pb2.ExportTraceServiceRequest()
        copy.CopyFrom(request)
        self.requests.append(list(records_from_proto(copy.resource_spans)))
        return 0

    def close(self) -> None:
        pass

    @property
    def records(self) -> list[SpanRecord]:
        return [r for req in self.requests for r in req]


class FakeTime:
    """A clock that moves only when the replayer sleeps."""

    def __init__(self) -> None:
        self.mono = 100.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.mono

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.mono += seconds


def replayer(sender: Collecting, earliest: int, speed: float, fake: FakeTime, batch: int = 1000,
             key: bytes = b"k" * 32) -> Replayer:
    return Replayer(sender, earliest, speed, batch, IdRemap(key), clock=lambda: NOW_NS,
                    monotonic=fake.monotonic, sleep=fake.sleep)


def tree(start_s: float, size: int, rng: random.Random, service: str = "web") -> list[SpanRecord]:
    """A trace of ``size`` spans, each child of a random earlier one."""
    root = span("root", start_s, 100, service=service)
    out = [root]
    for i in range(1, size):
        parent = rng.choice(out)
        out.append(span(f"op{i % 4}", start_s + i * 0.001, rng.uniform(1, 50), service=service,
                        trace=root.trace_id, parent=parent.span_id, kind=SpanKind.CLIENT,
                        attributes={"i": i, "f": 0.5, "s": "x", "b": True, "l": ("a", "b")},
                        events=[("ev", start_s + i * 0.001, {"k": i})], error=i % 3 == 0))
    return out


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(0, 2**32), st.integers(1, 3))
def test_ids_are_fresh_and_parent_links_follow(size: int, seed: int, traces: int) -> None:
    rng = random.Random(seed)
    originals = [tree(t * 2.0, size, rng) for t in range(traces)]
    sender, fake = Collecting(), FakeTime()
    rep = replayer(sender, EPOCH_NS, 0, fake, batch=7)
    for trace in originals:
        rep.add(trace, trace[0].start_time)
    rep.close()
    sent = sender.records
    assert len(sent) == size * traces and rep.spans == size * traces and rep.traces == traces
    assert all(len(req) <= 7 for req in sender.requests)
    old = [r for trace in originals for r in trace]
    new_of = {}
    for before, after in zip(old, sent, strict=True):
        assert after.trace_id != before.trace_id and after.span_id != before.span_id
        assert (after.name, after.kind, after.error) == (before.name, before.kind, before.error)
        assert after.resource == before.resource
        assert after.end_time - after.start_time == before.end_time - before.start_time
        assert dict(after.attributes) == dict(before.attributes)
        assert [(e.name, dict(e.attributes)) for e in after.events] == [(e.name, dict(e.attributes))
                                                                        for e in before.events]
        new_of[(before.trace_id, before.span_id)] = after
    assert len({(r.trace_id, r.span_id) for r in sent}) == len(sent)  # still unique
    roots = {t[0].trace_id: new_of[(t[0].trace_id, t[0].span_id)] for t in originals}
    for before in old:
        after = new_of[(before.trace_id, before.span_id)]
        root = roots[before.trace_id]
        assert after.trace_id == root.trace_id  # one new trace id per trace
        if before.parent_id is None:
            assert after.parent_id is None
        else:
            assert after.parent_id == new_of[(before.trace_id, before.parent_id)].span_id
    assert len({r.trace_id for r in sent}) == traces


def test_a_parent_outside_the_input_maps_the_same_for_every_child() -> None:
    ids = IdRemap(b"a" * 32)
    assert ids.span(5, 9) == ids.span(5, 9) != ids.span(6, 9)
    assert IdRemap(b"b" * 32).span(5, 9) != ids.span(5, 9)
    assert IdRemap().trace(1) != IdRemap().trace(1)  # a fresh key per run: new ids every replay
    assert ids.trace(1).bit_length() <= 128 and ids.span(1, 1).bit_length() <= 64


@pytest.mark.parametrize("speed,sleeps,second_start_s", [(1.0, [10.0], 10.0), (2.0, [5.0], 5.0),
                                                          (0.5, [20.0], 20.0), (0.0, [], 0.0)])
def test_times_shift_to_now_and_speed_divides_the_gaps(speed: float, sleeps: list[float],
                                                       second_start_s: float) -> None:
    rng = random.Random(1)
    first, second = tree(3.0, 5, rng), tree(13.0, 5, rng)
    sender, fake = Collecting(), FakeTime()
    rep = replayer(sender, first[0].start_time, speed, fake)
    for trace in (first, second):
        rep.add(trace, trace[0].start_time)
    rep.close()
    assert fake.sleeps == pytest.approx(sleeps)
    assert len(sender.requests) == (2 if sleeps else 1)  # what was due went out before the wait
    sent = sender.records
    assert sent[0].start_time == NOW_NS  # the earliest span starts now
    assert sent[5].start_time == NOW_NS + int(second_start_s * 1e9)
    for before, after in zip(first + second, sent, strict=True):  # within a trace, offsets are kept
        trace_start = (first if before in first else second)[0].start_time
        new_start = sent[0 if before in first else 5].start_time
        assert after.start_time - new_start == before.start_time - trace_start
        assert [e.timestamp - after.start_time for e in after.events] == [
            e.timestamp - before.start_time for e in before.events]


def test_stored_traces_come_back_whole_and_in_start_order(tmp_path: Path) -> None:
    rng = random.Random(2)
    traces = [tree(s, n, rng, service=f"svc{n % 2}") for s, n in ((30.0, 4), (10.0, 7), (20.0, 1))]
    conn = store(tmp_path / "s.duckdb", [r for t in traces for r in t])
    got = list(stored_traces(conn, fetch_rows=3))
    want = sorted(traces, key=lambda t: t[0].start_time)
    assert [len(t) for t in got] == [7, 1, 4]
    for back, orig in zip(got, want, strict=True):
        for b, o in zip(back, sorted(orig, key=lambda r: r.start_time), strict=True):
            assert (b.trace_id, b.span_id, b.parent_id, b.name, b.kind) == (
                o.trace_id, o.span_id, o.parent_id, o.name, o.kind)
            assert (b.start_time, b.end_time, b.error) == (o.start_time, o.end_time, o.error)
            assert dict(b.resource) == dict(o.resource)
            assert {k: (list(v) if isinstance(v, tuple) else v) for k, v in o.attributes.items()} == dict(
                b.attributes)
    early = list(stored_traces(conn, "start_ns < ?", [EPOCH_NS + 15 * 10**9]))
    assert [[r.span_id for r in t] for t in early] == [[r.span_id for r in got[0]]]


# -- the CLI against in-process receivers ------------------------------------------------------------


class GrpcReceiver(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.records: list[SpanRecord] = []
        self.requests = 0

    def Export(self, request: Any, context: Any) -> Any:
        self.records.extend(records_from_proto(request.resource_spans))
        self.requests += 1
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture()
def grpc_receiver() -> Iterator[tuple[str, GrpcReceiver]]:
    receiver = GrpcReceiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(receiver, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", receiver
    server.stop(None)


@pytest.fixture()
def http_receiver() -> Iterator[tuple[str, list[SpanRecord], list[str]]]:
    records: list[SpanRecord] = []
    paths: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            message = trace_service_pb2.ExportTraceServiceRequest.FromString(body)
            records.extend(records_from_proto(message.resource_spans))
            paths.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", records, paths
    server.shutdown()
    server.server_close()


def structure(records: list[SpanRecord]) -> set[tuple[str, str | None]]:
    """(name, parent's name) pairs: what survives a replay."""
    by_id = {(r.trace_id, r.span_id): r for r in records}
    return {(r.name, by_id[(r.trace_id, r.parent_id)].name if r.parent_id is not None else None)
            for r in records}


def test_replay_files_over_grpc(tmp_path: Path, grpc_receiver: tuple[str, GrpcReceiver]) -> None:
    endpoint, receiver = grpc_receiver
    rng = random.Random(3)
    records = [r for s in range(20) for r in tree(s * 1.0, 6, rng)]
    path = write_otlp_json(tmp_path / "traces.jsonl", records, per_line=25)  # traces split across lines
    result = CliRunner().invoke(insights, ["replay", str(path), "--endpoint", endpoint, "--speed", "max",
                                           "--batch", "50"])
    assert result.exit_code == 0, result.output
    assert "replay: 20 traces, 120 spans sent in 3 requests" in result.stderr
    assert len(receiver.records) == 120 and receiver.requests == 3
    assert structure(receiver.records) == structure(records)
    assert not {r.trace_id for r in receiver.records} & {r.trace_id for r in records}
    assert len({r.trace_id for r in receiver.records}) == 20


def test_replay_a_store_over_http(tmp_path: Path, http_receiver: tuple[str, list[SpanRecord], list[str]]
                                  ) -> None:
    url, received, paths = http_receiver
    rng = random.Random(4)
    records = [r for s in range(5) for r in tree(s * 1.0, 4, rng)]
    tests = tree(100.0, 3, rng, service="under-test")
    db = tmp_path / "s.duckdb"
    conn = store(db, records)
    from otel_chronograph.insights._store import insert_spans, span_row

    insert_spans(conn, (span_row(r, "test") for r in tests))
    conn.close()
    result = CliRunner().invoke(insights, ["replay", "--db", str(db), "--endpoint", url, "--protocol", "http",
                                           "--speed", "0"])
    assert result.exit_code == 0, result.output
    assert set(paths) == {"/v1/traces"}
    assert len(received) == 20 and structure(received) == structure(records)  # production only
    received.clear()
    result = CliRunner().invoke(insights, ["replay", "--db", str(db), "--endpoint", f"{url}/custom/path",
                                           "--protocol", "http", "--speed", "max", "--label", "test"])
    assert result.exit_code == 0, result.output
    assert paths[-1] == "/custom/path" and structure(received) == structure(tests)
    received.clear()
    result = CliRunner().invoke(insights, ["replay", "--db", str(db), "--endpoint", url, "--protocol", "http",
                                           "--speed", "max", "--since", "2026-11-02T00:00:03Z"])
    assert result.exit_code == 0, result.output
    assert len(received) == 8  # the traces starting at 3 s and 4 s


def test_malformed_lines_are_reported_and_the_rest_is_sent(tmp_path: Path,
                                                          grpc_receiver: tuple[str, GrpcReceiver]) -> None:
    endpoint, receiver = grpc_receiver
    path = write_otlp_json(tmp_path / "t.jsonl", tree(0, 3, random.Random(5)))
    path.write_text("{not json\n" + path.read_text())
    result = CliRunner().invoke(insights, ["replay", str(path), "--endpoint", endpoint, "--speed", "max"])
    assert result.exit_code == 2
    assert f"{path}:1:" in result.stderr
    assert len(receiver.records) == 3


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_nothing_listening_is_a_clean_error(tmp_path: Path, protocol: str) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    path = write_otlp_json(tmp_path / "t.jsonl", tree(0, 2, random.Random(6)))
    result = CliRunner().invoke(insights, ["replay", str(path), "--endpoint", f"http://127.0.0.1:{port}",
                                           "--protocol", protocol, "--connect-timeout", "0.5"])
    assert result.exit_code == 1, result.output
    assert "cannot connect" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("args,message", [
    (["--speed", "fast"], "'max'"), (["--speed", "-1"], "≥ 0"),
    (["x.jsonl", "--db", "s.duckdb"], "not both"), (["missing.jsonl"], "no such file"),
    (["--db", "missing.duckdb"], "no such insights store"),
])
def test_bad_arguments(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "x.jsonl").write_text("")
    args = [str(tmp_path / a) if a.endswith((".jsonl", ".duckdb")) else a for a in args]
    result = CliRunner().invoke(insights, ["replay", "--endpoint", "127.0.0.1:1", *args])
    assert result.exit_code in (1, 2) and message in result.output, result.output


# -- end to end: the real Collector -> Jaeger, and spanmetrics -> Prometheus ---------------------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import peers  # noqa: E402

E2E_NAMES = ["GET /orders/{id}", 'quote " and back\\slash', "db.query"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[peers.PeerStack]:
    """One Jaeger + Collector + Prometheus for this module's e2e tests (each uses its own service)."""
    stack = peers.PeerStack(tmp_path_factory.mktemp("peers"))
    try:
        stack.start()
    except (peers.PeerError, TimeoutError) as exc:
        stack.stop()
        pytest.fail(f"could not start the peer stack (scripts/build-peers.sh builds it): {exc}",
                    pytrace=False)
    try:
        yield stack
    finally:
        stack.stop()


def shop(service: str, traces: int, gap_s: float) -> list[SpanRecord]:
    rng = random.Random(8)
    out = []
    for i in range(traces):
        root = span(E2E_NAMES[0], i * gap_s, 40 + rng.random(), service=service, error=i % 5 == 0)
        mid = span(E2E_NAMES[1], i * gap_s + 0.001, 20, service=service, trace=root.trace_id,
                   parent=root.span_id, kind=SpanKind.INTERNAL, attributes={"i": i})
        leaf = span(E2E_NAMES[2], i * gap_s + 0.002, 5, service=service, trace=root.trace_id,
                    parent=mid.span_id, kind=SpanKind.CLIENT)
        out += [root, mid, leaf]
    return out


def jaeger_shape(spans: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    names = {s["spanId"]: s["name"] for s in spans}
    return sorted((s["name"], names.get(s.get("parentSpanId") or "")) for s in spans)


@pytest.mark.e2e
def test_replay_into_the_collector_shows_in_jaeger_with_new_ids(tmp_path: Path, stack: peers.PeerStack
                                                                 ) -> None:
    assert stack.jaeger and stack.collector and stack.prometheus
    service = f"replay-{random.Random().getrandbits(32):08x}"
    records = shop(service, 12, 60.0)  # a trace a minute in production
    db = tmp_path / "prod.duckdb"
    store(db, records).close()
    started = time.time()
    result = CliRunner().invoke(insights, ["replay", "--db", str(db), "--endpoint",
                                           stack.collector.otlp_grpc_endpoint, "--speed", "max"])
    assert result.exit_code == 0, result.output + stack.logs()
    assert "12 traces, 36 spans" in result.stderr

    def replayed() -> list[dict[str, Any]]:
        spans = stack.jaeger.find_traces(service)  # type: ignore[union-attr]
        return spans if len(spans) >= 36 else []

    spans = peers.wait_until(replayed, 60, "the replayed traces in Jaeger")
    assert len(spans) == 36
    assert jaeger_shape(spans) == sorted(
        (n, p) for _ in range(12) for n, p in ((E2E_NAMES[0], None), (E2E_NAMES[1], E2E_NAMES[0]),
                                                (E2E_NAMES[2], E2E_NAMES[1])))
    old_ids = {f"{r.trace_id:032x}" for r in records}
    new_ids = {s["traceId"] for s in spans}
    assert len(new_ids) == 12 and not new_ids & old_ids
    starts = sorted(int(s["startTimeUnixNano"]) for s in spans if s["name"] == E2E_NAMES[0])
    # --speed max: each trace starts when it was sent (now, in order), not minutes apart as in production
    assert started - 1 <= starts[0] / 1e9 <= starts[-1] / 1e9 <= time.time()
    codes = [(s.get("status") or {}).get("code") for s in spans]
    assert sum(c in (2, "STATUS_CODE_ERROR") for c in codes) == 3, codes

    # the series the monitor rules select exist under the names the spanmetrics connector exports
    from otel_chronograph.insights._monitor import _selector, latency_expr

    for name in E2E_NAMES:
        for metric in ("traces_span_metrics_calls_total", "traces_span_metrics_duration_milliseconds_bucket"):
            selector = _selector(metric, service, name)
            peers.wait_until(lambda s=selector: stack.prometheus.query_vector(s),  # type: ignore[union-attr]
                             60, f"{selector} in Prometheus")
        expr = latency_expr("traces_span_metrics", service, name, "1m")  # rate() needs a second scrape
        peers.wait_until(lambda e=expr: stack.prometheus.query_vector(e), 30, expr)  # type: ignore[union-attr]


@pytest.mark.e2e
def test_replay_over_http_at_double_speed(tmp_path: Path, stack: peers.PeerStack) -> None:
    assert stack.jaeger and stack.collector
    service = f"replay-http-{random.Random().getrandbits(32):08x}"
    path = write_otlp_json(tmp_path / "traces.jsonl", shop(service, 3, 1.0))
    began = time.monotonic()
    result = CliRunner().invoke(insights, ["replay", str(path), "--protocol", "http", "--speed", "2",
                                           "--endpoint", stack.collector.otlp_http_endpoint])
    elapsed = time.monotonic() - began
    assert result.exit_code == 0, result.output + stack.logs()
    assert elapsed >= 1.0  # gaps of 1 s between 3 traces, halved: at least 2 x 0.5 s of waiting
    spans = peers.wait_until(lambda: len(s := stack.jaeger.find_traces(service)) >= 9 and s,  # type: ignore[union-attr]
                             60, "the replayed traces in Jaeger")
    starts = sorted(int(s["startTimeUnixNano"]) for s in spans if s["name"] == E2E_NAMES[0])
    assert [b - a for a, b in itertools.pairwise(starts)] == [500_000_000] * 2
