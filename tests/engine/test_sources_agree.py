"""SPEC.md Part 2: the three front ends (in-process processor, OTLP protobuf, OTLP JSON) yield the same
``Lap`` — every field — for the same spans. Random traces are made with the real SDK."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from google.protobuf.json_format import MessageToDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

import otel_chronograph as chrono
from otel_chronograph import Lap, load_config
from otel_chronograph.engine import Engine, TraceLaps
from otel_chronograph.sources import records_from_json, records_from_proto

MS = 1_000_000
T0 = 1_763_762_400_000 * MS

CONFIG: dict[str, Any] = {
    "display": {"split_times": False}, "recorder": {"enabled": False},
    "laps": {"match": [{"name": "job*", "command": "batch job"}],
             "identity": {"customer": [{"attribute": "enduser.id"}],
                          "tier": [{"attribute": "http.request.header.x-tier"}]}},
    "sectors": {"rules": [{"name": "storage", "match": {"attribute": "db.system"}},
                          {"name": "backend", "match": {"kind": "CLIENT"}}]},
    "billing": {"rates": {"GET /a": "0.25", "batch job": "1.5"}},
}

KINDS = (SpanKind.INTERNAL, SpanKind.CLIENT, SpanKind.SERVER)
NAMES = ("job-nightly", "GET /a", "SELECT 1", "work", "call")
EVENTS = ("milestone", "exception")


@st.composite
def span_trees(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Nodes in creation order: parent index (-1 root, -2 a remote parent), times, name, kind, attrs."""
    nodes: list[dict[str, Any]] = []
    for i in range(draw(st.integers(1, 12))):
        parent = -1 if i == 0 else draw(st.sampled_from([-1, -2, *range(i)]))
        start = draw(st.integers(0, 80))
        attrs: dict[str, Any] = {}
        if draw(st.booleans()):
            attrs["chronograph.sector"] = draw(st.sampled_from(["init", "load", "exec"]))
        if draw(st.integers(0, 4)) == 0:
            attrs["db.system"] = "sqlite"
        if draw(st.integers(0, 5)) == 0:
            attrs["chronograph.lap"] = True
        if draw(st.integers(0, 3)) == 0:
            attrs["enduser.id"] = draw(st.sampled_from(["cus_1", "cus_2"]))
        if draw(st.integers(0, 3)) == 0:
            attrs["http.request.header.x-tier"] = [draw(st.sampled_from(["pro", "enterprise"]))]
        if draw(st.integers(0, 3)) == 0:
            attrs["http.route"], attrs["http.request.method"] = "/a", "GET"
        nodes.append({
            "parent": parent, "start": start, "end": start + draw(st.integers(0, 60)),
            "name": draw(st.sampled_from(NAMES)), "kind": draw(st.sampled_from(KINDS)), "attrs": attrs,
            "error": draw(st.integers(0, 6)) == 0,
            "events": draw(st.lists(st.tuples(st.integers(0, 50), st.sampled_from(EVENTS)), max_size=2)),
        })
    return nodes


def run_in_process(nodes: list[dict[str, Any]], trace_id: int) -> tuple[list[Lap], list[ReadableSpan]]:
    provider = TracerProvider(resource=Resource({"service.name": "svc", "service.instance.id": "1"}))
    raw = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(raw))  # the spans as they are, before chronograph
    processor = chrono.install(provider, config=CONFIG, span_processors=[])
    laps: list[Lap] = []
    processor.add_sink(laps.append, deferred=False)
    tracer = provider.get_tracer("t")
    remote = trace.set_span_in_context(NonRecordingSpan(SpanContext(
        trace_id, 0xABCDEF, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED))))
    live: list[Any] = []
    for n in nodes:
        if n["parent"] == -2:
            ctx = remote
        elif n["parent"] == -1:
            ctx = None  # a true root: no parent at all (a fresh trace id from the SDK)
        else:
            ctx = trace.set_span_in_context(live[n["parent"]])
        span = tracer.start_span(n["name"], context=ctx, kind=n["kind"], attributes=n["attrs"],
                                 start_time=T0 + n["start"] * MS)
        for at, name in n["events"]:
            attrs = {"exception.message": "boom", "exception.type": "ValueError"} if name == "exception" \
                else {"step": at, "tags": ("a", "b")}
            span.add_event(name, attrs, timestamp=T0 + at * MS)
        if n["error"]:
            span.set_status(Status(StatusCode.ERROR, "failed" if n["start"] % 2 else None))
        live.append(span)
    # Children end before their parents (as real code does); timestamps are whatever was drawn.
    for i in reversed(range(len(nodes))):
        live[i].end(end_time=T0 + nodes[i]["end"] * MS)
    spans = list(raw.get_finished_spans())
    provider.shutdown()
    return laps, spans


def offline(records: list[Any]) -> list[Lap]:
    laps = TraceLaps(Engine(load_config(CONFIG, environ={})))
    laps.add(records)
    return [lap for trace_ in laps.buffer.due(everything=True) for _, lap in laps.finish(trace_)]


def _hex_ids(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: (base64.b64decode(v).hex() if k in ("traceId", "spanId", "parentSpanId") and v else
                    _hex_ids(v)) for k, v in node.items()}
    if isinstance(node, list):
        return [_hex_ids(x) for x in node]
    return node


def as_otlp_json(spans: list[ReadableSpan]) -> Mapping[str, Any]:
    """What the Collector's file exporter writes for these spans: OTLP JSON with hex ids."""
    doc = MessageToDict(encode_spans(spans))
    return json.loads(json.dumps(_hex_ids(doc)))


def same(a: list[Lap], b: list[Lap]) -> None:
    key = lambda lap: lap.request_id  # noqa: E731
    a, b = sorted(a, key=key), sorted(b, key=key)
    assert [x.request_id for x in a] == [x.request_id for x in b]
    for x, y in zip(a, b, strict=True):
        for f in fields(Lap):
            assert getattr(x, f.name) == getattr(y, f.name), (x.request_id, f.name)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(span_trees(), st.integers(1, 2**128 - 1))
def test_processor_otlp_protobuf_and_otlp_json_give_the_same_laps(nodes: list[dict[str, Any]],
                                                                   trace_id: int) -> None:
    in_process, spans = run_in_process(nodes, trace_id)
    request = encode_spans(spans)
    via_proto = offline(list(records_from_proto(request.resource_spans)))
    via_json = offline(records_from_json(as_otlp_json(spans)))
    same(in_process, via_proto)
    same(in_process, via_json)


def test_a_known_trace_agrees_and_is_not_empty() -> None:
    nodes = [
        {"parent": -1, "start": 0, "end": 100, "name": "GET /a", "kind": SpanKind.SERVER,
         "attrs": {"http.route": "/a", "http.request.method": "GET", "enduser.id": "cus_9",
                   "http.request.header.x-tier": ["pro"]}, "error": False, "events": []},
        {"parent": 0, "start": 10, "end": 40, "name": "SELECT 1", "kind": SpanKind.CLIENT,
         "attrs": {"db.system": "sqlite"}, "error": False, "events": [(20, "milestone")]},
        {"parent": 0, "start": 50, "end": 90, "name": "call", "kind": SpanKind.CLIENT, "attrs": {},
         "error": False, "events": []},
    ]
    in_process, spans = run_in_process(nodes, 0xAB)
    (lap,) = in_process
    assert (lap.command, lap.customer, lap.tier, str(lap.cost)) == ("GET /a", "cus_9", "pro", "0.25")
    assert lap.sectors == {"storage": 30.0, "backend": 40.0}
    same(in_process, offline(records_from_json(as_otlp_json(spans))))
