"""The child's environment (merged, carriers, OTLP variables) and the conversion of a child's OTLP spans
(real SDK spans encoded by the real OTLP encoder) into records and re-exportable SDK spans."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import baggage, trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from otel_chronograph.exec._carriers import child_environment, context_from_environment
from otel_chronograph.exec._join import ChildSpans, readable_spans
from otel_chronograph.sources import record_of

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def test_child_environment_is_a_merged_copy() -> None:
    base = {"PATH": "/bin", "KEEP": "1", "TRACEPARENT": "stale", "OTEL_TRACES_EXPORTER": "console"}
    ctx = context_from_environment({"TRACEPARENT": TRACEPARENT, "BAGGAGE": "tier=pro"})
    env = child_environment(base, ctx, "http://127.0.0.1:5/abc")
    assert env["PATH"] == "/bin" and env["KEEP"] == "1" and base["TRACEPARENT"] == "stale"
    assert env["TRACEPARENT"] == TRACEPARENT and env["BAGGAGE"] == "tier=pro"
    assert env["OTEL_TRACES_EXPORTER"] == "otlp"
    assert env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == "http://127.0.0.1:5/abc/v1/traces"
    assert env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == "http://localhost:4317"
    assert env["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"] == "grpc"
    assert baggage.get_baggage("tier", ctx) == "pro"


def test_metrics_and_logs_keep_their_destination() -> None:
    base = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318/",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT": "http://logs:4318/v1/logs"}
    env = child_environment(base, context_from_environment({}), "http://127.0.0.1:5/x")
    assert env["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == "http://collector:4318/v1/metrics"
    assert env["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"] == "http/protobuf"
    assert env["OTEL_EXPORTER_OTLP_LOGS_ENDPOINT"] == "http://logs:4318/v1/logs"
    assert "TRACEPARENT" not in env  # no span in the context: nothing to carry
    plain = child_environment(base, context_from_environment({}), None)
    assert plain == base  # without a receiver only the carriers change


def _child_spans(traceparent: str = TRACEPARENT) -> list[ReadableSpan]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource({"service.name": "child", "host.name": "h"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("child.lib", "1.2", schema_url="https://opentelemetry.io/schemas/1.21.0")
    parent = context_from_environment({"TRACEPARENT": traceparent})
    with tracer.start_as_current_span("main", context=parent, kind=SpanKind.SERVER) as main:
        main.add_event("started", {"n": 3, "tags": ("a", "b")})
        with tracer.start_as_current_span("load", attributes={"chronograph.sector": "load", "ratio": 0.5},
                                          links=[Link(main.get_span_context(), {"why": "x"})]) as load:
            load.set_status(Status(StatusCode.ERROR, "disk full"))
    return list(exporter.get_finished_spans())


def test_child_spans_convert_to_the_same_records_and_spans() -> None:
    originals = _child_spans()
    request = encode_spans(originals)
    pairs = [pair for rs in request.resource_spans for pair in readable_spans(rs)]
    assert len(pairs) == 2
    for (record, copy), original in zip(pairs, originals, strict=True):
        expected = record_of(original)
        for field in ("trace_id", "span_id", "parent_id", "name", "kind", "start_time", "end_time", "error",
                      "status_message"):
            assert getattr(record, field) == getattr(expected, field), field
        assert dict(record.attributes) == dict(expected.attributes)
        assert dict(record.resource) == dict(expected.resource)
        assert copy.context == original.context and copy.parent == original.parent
        assert copy.name == original.name and copy.kind == original.kind
        assert (copy.start_time, copy.end_time) == (original.start_time, original.end_time)
        assert dict(copy.attributes or {}) == dict(original.attributes or {})
        assert copy.status.status_code == original.status.status_code
        assert copy.status.description == original.status.description
        assert [(e.name, dict(e.attributes or {}), e.timestamp) for e in copy.events] == \
               [(e.name, dict(e.attributes or {}), e.timestamp) for e in original.events]
        assert [(li.context.span_id, dict(li.attributes or {})) for li in copy.links] == \
               [(li.context.span_id, dict(li.attributes or {})) for li in original.links]
        assert copy.instrumentation_scope == original.instrumentation_scope
        assert dict(copy.resource.attributes) == dict(original.resource.attributes)
    assert pairs[1][1].parent is not None and pairs[1][1].parent.is_remote  # main's parent: from TRACEPARENT


class _Collect(SpanProcessor):
    def __init__(self) -> None:
        self.spans: list[ReadableSpan] = []

    def on_end(self, span: ReadableSpan) -> None:
        self.spans.append(span)


def _request(spans: Sequence[ReadableSpan]) -> Any:
    return encode_spans(list(spans))


def test_child_spans_are_forwarded_once_kept_bounded_and_late_counted() -> None:
    originals = _child_spans()
    trace_id = originals[0].context.trace_id
    out = _Collect()
    children = ChildSpans([out], max_spans=1)
    children.expect(trace_id)
    children.on_request(_request(originals))
    children.on_request(_request(originals))  # an exporter's retry: not forwarded twice
    assert len(out.spans) == 2 and children.duplicates == 2
    assert children.joined == 1 and children.dropped == 1  # the bound
    assert [r.name for r in children.take(trace_id)] == ["load"]
    children.on_request(_request(_child_spans()))  # the same trace after its lap: exported, counted late
    assert len(out.spans) == 4 and children.late == 2
    other = _child_spans("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")
    children.on_request(_request(other))  # a trace no lap waits for: exported only
    assert len(out.spans) == 6 and children.late == 2 and children.received == 6


def test_sampled_flag_so_batch_processors_export_them() -> None:
    copy = next(readable_spans(encode_spans(_child_spans()).resource_spans[0]))[1]
    assert copy.context.trace_flags.sampled
    assert trace.format_trace_id(copy.context.trace_id) == TRACEPARENT.split("-")[1]


def _joining_lap_waiting_for_grace() -> tuple[Any, list[Any], Any]:
    """A JoiningProcessor whose lap's root has ended with a child still open (grace period running),
    and a child process's spans kept for that lap's trace."""
    from otel_chronograph._config import load_config
    from otel_chronograph.exec._join import JoiningProcessor

    children = ChildSpans([], max_spans=100)
    config = load_config({"laps": {"grace_ms": 60_000}, "recorder": {"enabled": False}}, environ={})
    proc = JoiningProcessor(children, config, [], None, metrics_enabled=False)
    laps: list[Any] = []
    proc.add_sink(laps.append, deferred=False)
    provider = TracerProvider()
    provider.add_span_processor(proc)
    tracer = provider.get_tracer("t")
    parent = context_from_environment({"TRACEPARENT": TRACEPARENT})
    root = tracer.start_span("run tool", context=parent, kind=SpanKind.SERVER)
    open_child = tracer.start_span("background", context=trace.set_span_in_context(root))
    children.expect(root.get_span_context().trace_id)
    children.on_request(_request(_child_spans()))  # the child process's "main" and "load"
    root.end()
    assert laps == [] and proc._assembler.has_waiting()  # held for the child still open
    return proc, laps, open_child


def test_a_lap_completed_at_shutdown_still_gets_the_child_process_spans() -> None:
    proc, laps, open_child = _joining_lap_waiting_for_grace()
    proc.shutdown()
    (lap,) = laps
    assert lap.trace_id == TRACEPARENT.split("-")[1]
    assert {s.name for s in lap.spans} == {"main", "load"} and lap.truncated  # "background" never ended
    open_child.end()


def test_a_lap_whose_grace_period_passed_still_gets_the_child_process_spans() -> None:
    proc, laps, open_child = _joining_lap_waiting_for_grace()
    for pending in proc._assembler._waiting_grace.values():
        pending.deadline_ns = 0  # the grace period is over: what the sweeper thread finds
    proc._sweep()
    (lap,) = laps
    assert {s.name for s in lap.spans} == {"main", "load"}
    open_child.end()
    proc.shutdown()
