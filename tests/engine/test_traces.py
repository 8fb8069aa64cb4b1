"""The decision_wait buffer (bounded, late spans counted) and lap scope on ended spans."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind

from otel_chronograph.engine import SpanRecord, TraceBuffer, compile_lap_rules, split_laps
from otel_chronograph.engine._records import EMPTY

S = 1_000_000_000
RES_A: dict[str, Any] = {"service.name": "a"}
RES_B: dict[str, Any] = {"service.name": "b"}


def rec(trace: int, span: int, parent: int | None = None, kind: SpanKind = SpanKind.INTERNAL,
        resource: dict[str, Any] = RES_A, remote: bool | None = None, attrs: Any = EMPTY,
        name: str = "op") -> SpanRecord:
    return SpanRecord(trace, span, parent, name, kind, 0, 10, attrs, resource=resource, parent_remote=remote)


class Clock:
    def __init__(self) -> None:
        self.now = 0

    def __call__(self) -> int:
        return self.now


def test_a_trace_is_decided_decision_wait_after_its_last_span() -> None:
    clock = Clock()
    buf = TraceBuffer(2.0, 10, 100, clock=clock)
    buf.add([rec(1, 1)])
    clock.now = 1 * S
    buf.add([rec(1, 2, 1)])  # the root arrived first; a span of another service comes later
    clock.now = 2 * S + 1
    assert buf.due() == []  # 2 s after the first span, but only 1 s after the last
    clock.now = 3 * S
    (trace,) = buf.due()
    assert [r.span_id for r in trace.records] == [1, 2]
    assert buf.stats.decided == 1


def test_late_spans_are_returned_and_counted() -> None:
    clock = Clock()
    buf = TraceBuffer(1.0, 10, 100, clock=clock)
    buf.add([rec(7, 1)])
    clock.now = 5 * S
    assert len(buf.due()) == 1
    late, forced = buf.add([rec(7, 2, 1), rec(8, 1)])
    assert [r.span_id for r in late] == [2] and forced == []
    assert buf.stats.late_spans == 1 and len(buf) == 1


def test_bounds_refuse_or_complete_the_oldest_and_cap_spans_per_trace() -> None:
    buf = TraceBuffer(60.0, 2, 3, clock=Clock())
    buf.add([rec(1, i) for i in range(1, 6)])
    assert buf.stats.dropped_spans == 2
    buf.add([rec(2, 1)])
    assert buf.full() and not buf.full(0)
    _, forced = buf.add([rec(3, 1)], force_oldest=True)
    assert [t.trace_id for t in forced] == [1] and buf.stats.forced == 1 and len(buf) == 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 30), st.integers(1, 50)), max_size=300), st.integers(1, 10))
def test_memory_is_bounded_and_every_span_is_accounted(spans: list[tuple[int, int]], bound: int) -> None:
    buf = TraceBuffer(60.0, bound, 5, clock=Clock())
    out = 0
    for trace, span in spans:
        late, forced = buf.add([rec(trace, span)], force_oldest=True)
        out += len(late) + sum(len(t.records) + t.dropped for t in forced)
        assert len(buf) <= bound
    out += sum(len(t.records) + t.dropped for t in buf.due(everything=True))
    assert out + buf.stats.duplicate_spans == len(spans)


def test_a_span_delivered_twice_while_pending_is_kept_once_and_its_trace_gives_one_lap() -> None:
    clock = Clock()
    buf = TraceBuffer(1.0, 10, 100, clock=clock)
    request = [rec(5, 1, None, SpanKind.SERVER), rec(5, 2, 1)]
    buf.add(request)
    buf.add(request)  # the sender retried: its first answer was lost
    buf.add([request[0], rec(5, 3, 1)])
    clock.now = 5 * S
    (trace,) = buf.due()
    assert [r.span_id for r in trace.records] == [1, 2, 3] and buf.stats.duplicate_spans == 3
    (lap,) = split_laps(trace.records, "trace", compile_lap_rules(()))
    assert lap.root.span_id == 1 and sorted(s.span_id for s in lap.spans) == [2, 3]


def test_service_scope_cuts_at_process_boundaries_and_trace_scope_does_not() -> None:
    decide = compile_lap_rules(())
    spans = [
        rec(1, 1, None, SpanKind.SERVER, RES_A, name="GET /a"),
        rec(1, 2, 1, SpanKind.CLIENT, RES_A, name="call b"),
        rec(1, 3, 2, SpanKind.SERVER, RES_B, remote=True, name="GET /b"),
        rec(1, 4, 3, SpanKind.INTERNAL, RES_B, name="db"),
        rec(1, 5, 2, SpanKind.SERVER, dict(RES_B), name="GET /b2"),  # no flags: resource differs
    ]
    service = {f.root.name: sorted(s.span_id for s in f.spans) for f in split_laps(spans, "service", decide)}
    assert service == {"GET /a": [2], "GET /b": [4], "GET /b2": []}
    (whole,) = split_laps(spans, "trace", decide)
    assert whole.root.name == "GET /a" and sorted(s.span_id for s in whole.spans) == [2, 3, 4, 5]


def test_trace_scope_roots_are_spans_whose_parent_is_absent() -> None:
    spans = [rec(1, 2, 99, SpanKind.SERVER), rec(1, 3, 2)]
    (lap,) = split_laps(spans, "trace", compile_lap_rules(()))
    assert lap.root.span_id == 2 and [s.span_id for s in lap.spans] == [3]


def test_trace_scope_a_fragment_whose_local_parent_is_absent_is_not_a_root() -> None:
    """A trace decided in pieces (its root's piece still on the way): the downstream service's SERVER
    span (remote parent) is a root, a span whose missing parent is in its own process is not."""
    spans = [rec(1, 3, 2, SpanKind.SERVER, RES_B, remote=True, name="GET /b"),
             rec(1, 4, 3, SpanKind.CLIENT, RES_B, remote=False, name="SELECT"),
             rec(1, 7, 1, SpanKind.CLIENT, RES_A, remote=False, name="SELECT a"),
             rec(1, 8, 5, SpanKind.INTERNAL, RES_A, remote=None, name="unknown flags")]
    laps = split_laps(spans, "trace", compile_lap_rules(()))
    assert sorted(f.root.name for f in laps) == ["GET /b", "unknown flags"]
    assert [s.span_id for f in laps if f.root.name == "GET /b" for s in f.spans] == [4]
