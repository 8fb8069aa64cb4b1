"""The lean protobuf -> record path reads only what rules and derivation need, yet derives the same
laps as ``records_from_proto``; forwarding regroups the original span bytes without loss."""

from __future__ import annotations

from collections import Counter
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, TracesData

from otel_chronograph import Lap, load_config
from otel_chronograph._config import ChronographConfig
from otel_chronograph.engine import Engine, TraceLaps
from otel_chronograph.engine._derive import lap_attributes
from otel_chronograph.gateway._records import LeanDecoder, attribute_keys
from otel_chronograph.gateway._wire import annotated_span, batches, set_any_value
from otel_chronograph.sources import records_from_proto
from otel_chronograph.sources._otlp import value_from_proto
from tests.engine.test_sources_agree import same

MS = 1_000_000
T0 = 1_763_762_400_000 * MS
# Keys rules may name, keys derivation always reads, and noise no configuration reads.
RULE_KEYS = ("db.system", "rpc.system", "enduser.id", "customer.id", "tier", "peer.service")
FIXED_KEYS = ("chronograph.lap", "chronograph.sector", "chronograph.command", "chronograph.tier",
              "chronograph.customer", "chronograph.score", "session.id", "http.route", "http.request.method",
              "http.method")
NOISE_KEYS = ("net.peer.name", "thread.id", "code.function", "http.status_code", "x.chronograph.y")

values = st.one_of(st.sampled_from(["a", "b", "sqlite", "pro", "/r", "GET", "chronograph.lap"]),
                   st.integers(-3, 3), st.booleans(), st.floats(0, 99, allow_nan=False),
                   st.lists(st.sampled_from(["x", "pro"]), min_size=1, max_size=2).map(tuple))


@st.composite
def configs(draw: st.DrawFn) -> ChronographConfig:
    rules: list[dict[str, Any]] = []
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            rules.append({"name": draw(st.sampled_from(["storage", "rpc", "peer"])),
                          "match": {"attribute": draw(st.sampled_from(RULE_KEYS))}})
        else:
            rules.append({"name_from": draw(st.sampled_from(["service.name", *RULE_KEYS])),
                          "match": {"kind": draw(st.sampled_from(["SERVER", "CLIENT"]))}})
    identity = {"customer": [{"baggage": "customer.id"}, {"attribute": "enduser.id"}],
                "tier": [{draw(st.sampled_from(["attribute", "baggage"])): "tier"}]}
    doc = {"laps": {"scope": draw(st.sampled_from(["trace", "service"])), "identity": identity,
                    "match": [{"attribute": "rpc.system", "command": "rpc"}] if draw(st.booleans()) else []},
           "sectors": {"rules": rules}, "recorder": {"enabled": False},
           "billing": {"rates": {"GET /r": "0.5", "rpc": "2"}}}
    return load_config(doc, environ={})


@st.composite
def requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    """One or two traces over two services, spans in random order across resources and scopes."""
    request = ExportTraceServiceRequest()
    scopes = []
    for service in ("front", "back"):
        rs = request.resource_spans.add()
        for key, value in (("service.name", service), ("host.name", "h1")):
            kv = rs.resource.attributes.add()
            kv.key = key
            kv.value.string_value = value
        rs.schema_url = draw(st.sampled_from(["", "https://opentelemetry.io/schemas/1.26.0"]))
        for scope_name in ("lib.a", "lib.b"):
            ss = rs.scope_spans.add()
            ss.scope.name = scope_name
            scopes.append(ss)
    for t in range(draw(st.integers(1, 2))):
        trace_id = (t + 1).to_bytes(16, "big")
        n = draw(st.integers(1, 10))
        for i in range(n):
            s = draw(st.sampled_from(scopes)).spans.add()
            s.trace_id = trace_id
            s.span_id = (t * 100 + i + 1).to_bytes(8, "big")
            parent = -1 if i == 0 else draw(st.integers(-2, i - 1))
            if parent >= 0:
                s.parent_span_id = (t * 100 + parent + 1).to_bytes(8, "big")
            elif parent == -2:
                s.parent_span_id = (999).to_bytes(8, "big")  # a parent not in the input
                s.flags = 0x300  # remote
            s.name = draw(st.sampled_from(["GET /r", "SELECT", "call", "work"]))
            s.kind = draw(st.integers(0, 5))
            start = draw(st.integers(0, 50))
            s.start_time_unix_nano = T0 + start * MS
            s.end_time_unix_nano = T0 + (start + draw(st.integers(0, 60))) * MS
            keys = draw(st.lists(st.sampled_from(RULE_KEYS + FIXED_KEYS + NOISE_KEYS), max_size=6))
            for key in keys:
                kv = s.attributes.add()
                kv.key = key
                set_any_value(kv.value, True if key == "chronograph.lap" and draw(st.booleans())
                              else draw(values))
            if draw(st.integers(0, 4)) == 0:
                s.status.code = 2
                s.status.message = draw(st.sampled_from(["", "boom"]))
            for at in draw(st.lists(st.integers(0, 40), max_size=2)):
                e = s.events.add()
                e.name = "exception" if at % 2 else "milestone"
                e.time_unix_nano = T0 + at * MS
                for key, value in (("exception.message", "bad"), ("db.system", "x")):
                    kv = e.attributes.add()
                    kv.key = key
                    kv.value.string_value = value
    return request


def derive_all(config: ChronographConfig, records: list[Any]) -> list[Lap]:
    laps = TraceLaps(Engine(config))
    laps.add(records)
    return [lap for trace in laps.buffer.due(everything=True)
            for _, lap in laps.finish(trace, lambda root: root.attributes)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(configs(), requests())
def test_lean_records_derive_the_same_laps_as_full_records(config: ChronographConfig,
                                                          request: ExportTraceServiceRequest) -> None:
    full = list(records_from_proto(request.resource_spans))
    lean = LeanDecoder(config).records(request.resource_spans)
    assert [(r.trace_id, r.span_id, r.parent_id, r.name, r.kind, r.start_time, r.end_time, r.error,
             r.status_message, dict(r.resource), r.parent_remote) for r in lean] == \
           [(r.trace_id, r.span_id, r.parent_id, r.name, r.kind, r.start_time, r.end_time, r.error,
             r.status_message, dict(r.resource), r.parent_remote) for r in full]
    keys = attribute_keys(config)
    for lr, fr in zip(lean, full, strict=True):
        assert dict(lr.attributes) == {k: v for k, v in fr.attributes.items() if k in keys}
    same(derive_all(config, full), derive_all(config, lean))


def _spans(body: bytes) -> Counter[tuple[bytes, bytes, bytes]]:
    out: Counter[tuple[bytes, bytes, bytes]] = Counter()
    for rs in TracesData.FromString(body).resource_spans:
        resource = rs.resource.SerializeToString() + rs.schema_url.encode()
        for ss in rs.scope_spans:
            scope = ss.scope.SerializeToString() + ss.schema_url.encode()
            for s in ss.spans:
                out[(resource, scope, s.SerializeToString())] += 1
    return out


@settings(max_examples=150, deadline=None)
@given(requests())
def test_forwarded_batches_hold_every_span_under_its_resource_and_scope(
        request: ExportTraceServiceRequest) -> None:
    records = LeanDecoder(load_config({}, environ={})).records(request.resource_spans)
    sent: Counter[tuple[bytes, bytes, bytes]] = Counter()
    count = 0
    for body, n in batches(records):
        sent += _spans(body)
        count += n
    assert count == len(records)
    assert sent == _spans(request.SerializeToString())


def test_batches_are_split_under_the_size_limit() -> None:
    request = ExportTraceServiceRequest()
    ss = request.resource_spans.add().scope_spans.add()
    for i in range(20):
        s = ss.spans.add()
        s.trace_id, s.span_id, s.name = b"\x01" * 16, (i + 1).to_bytes(8, "big"), "x" * 400_000
    records = LeanDecoder(load_config({}, environ={})).records(request.resource_spans)
    out = list(batches(records))
    assert len(out) > 2 and sum(n for _, n in out) == 20
    assert all(len(body) < 4 * 1024 * 1024 for body, _ in out)


def test_annotation_replaces_keys_and_keeps_everything_else() -> None:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="GET /r")
    for key, value in (("chronograph.command", "old"), ("http.route", "/r")):
        kv = span.attributes.add()
        kv.key = key
        kv.value.string_value = value
    record = LeanDecoder(load_config({}, environ={})).records(
        [_resource_spans_with(span)])[0]
    lap = derive_all(load_config({"laps": {"scope": "trace"}, "recorder": {"enabled": False}}, environ={}),
                     [record])[0]
    out = Span.FromString(annotated_span(record.source, lap_attributes(lap)))
    attrs = {kv.key: value_from_proto(kv.value) for kv in out.attributes}
    assert [kv.key for kv in out.attributes].count("chronograph.command") == 1
    assert attrs["chronograph.command"] == "old" and attrs["http.route"] == "/r"
    assert attrs["chronograph.request_id"] == lap.request_id and attrs["chronograph.lap"] is True
    assert (out.name, out.trace_id, out.span_id) == (span.name, span.trace_id, span.span_id)


def _resource_spans_with(span: Span) -> Any:
    request = ExportTraceServiceRequest()
    request.resource_spans.add().scope_spans.add().spans.append(span)
    return request.resource_spans[0]


scalar = st.one_of(st.text(max_size=20), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                   st.floats(allow_nan=False))


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(min_size=1, max_size=30), st.one_of(scalar, st.lists(scalar, max_size=3)
                                                                  .map(tuple)), max_size=8),
       st.booleans())
def test_annotation_on_the_wire_equals_setting_the_attributes(attributes: dict[str, Any],
                                                              coded: bool) -> None:
    span = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="GET /r")
    kv = span.attributes.add()
    kv.key, kv.value.string_value = ("chronograph.command" if coded else "http.route"), "x"
    out = Span.FromString(annotated_span(span.SerializeToString(), attributes))
    got = {kv.key: value_from_proto(kv.value) for kv in out.attributes}
    assert {k: got[k] for k in attributes} == attributes
    assert len(out.attributes) == len(set(got))  # no key twice
    assert out.name == "GET /r"
