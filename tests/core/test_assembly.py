"""Lap completion, grace periods, nested laps, eviction and the span cap (the Assembler alone)."""

from __future__ import annotations

import time
from typing import Any

from opentelemetry.trace import SpanKind

from otel_chronograph._config import LapRule
from otel_chronograph.engine._assembly import Assembler, Completed
from otel_chronograph.engine._rules import compile_lap_rules
from otel_chronograph.sources._sdk import attributes_of, record_of, resource_attributes

from .helpers import mk, root


class SdkAssembler(Assembler):
    """The assembler fed with SDK spans as the processor feeds it; completed roots are the SDK spans."""

    def start(self, span: Any) -> None:  # type: ignore[override]
        p = span.parent
        super().start(span.context.span_id, p.span_id if p is not None else None,
                      p is not None and p.is_remote, span.name, span.kind, attributes_of(span),
                      resource_attributes(span.resource))

    def end(self, span: Any) -> tuple[bool, list[Completed]]:  # type: ignore[override]
        held, done = super().end(record_of(span))
        return held, [SdkCompleted(c) for c in done]  # type: ignore[misc]


class SdkCompleted:
    def __init__(self, c: Completed) -> None:
        self.root = c.root.source
        self.spans = c.spans
        self.command, self.truncated, self.late = c.command, c.truncated, c.late

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SdkCompleted) and vars(self) == vars(other)


def asm(*, grace_ms: float = 0, max_pending: int = 100, max_spans: int = 100, auto: bool = True,
        rules: tuple[LapRule, ...] = ()) -> SdkAssembler:
    evicted: list[int] = []
    a = SdkAssembler(compile_lap_rules(rules), auto, max_pending, max_spans, grace_ms,
                     on_evict=evicted.append)
    a.evicted_ids = evicted  # type: ignore[attr-defined]
    return a


def test_lap_completes_when_root_and_all_spans_ended() -> None:
    a = asm()
    r, c1, c2 = root(0, 100), mk("c1", 1, 0x7F8A9B0C1D2E3F40, 10, 20), mk("c2", 2, 1, 12, 15)
    for s in (r, c1, c2):
        a.start(s)
    assert a.pending_count() == 1
    assert a.end(c2) == (False, [])
    assert a.end(c1) == (False, [])
    held, done = a.end(r)
    assert held is True
    assert len(done) == 1
    assert done[0].root is r
    assert {s.name for s in done[0].spans} == {"c1", "c2"}
    assert (done[0].truncated, done[0].late) == (False, 0)
    assert a.pending_count() == 0


def test_root_ends_first_with_zero_grace_completes_at_once_counting_open_spans_late() -> None:
    a = asm(grace_ms=0)
    r, c1, c2 = root(), mk("c1", 1, root().context.span_id, 10, 20), mk("c2", 2, 1, 10, 400)
    for s in (r, c1, c2):
        a.start(s)
    a.end(c1)
    held, done = a.end(r)
    assert held and len(done) == 1
    assert [s.name for s in done[0].spans] == ["c1"]
    assert (done[0].late, done[0].truncated) == (1, True)
    assert a.stats.late_spans == 1
    # The late span ending afterwards belongs to nothing: not held, completes nothing.
    assert a.end(c2) == (False, [])
    assert a.pending_count() == 0


def test_grace_waits_for_open_spans() -> None:
    a = asm(grace_ms=60_000)
    r = root()
    c = mk("c", 1, r.context.span_id, 10, 500)
    a.start(r)
    a.start(c)
    held, done = a.end(r)
    assert held and done == []
    assert a.has_waiting()
    assert a.next_deadline_ns() is not None
    held, done = a.end(c)
    assert held is False and len(done) == 1
    assert [s.name for s in done[0].spans] == ["c"]
    assert (done[0].late, done[0].truncated) == (0, False)
    assert not a.has_waiting()
    assert a.expire(everything=True) == []


def test_grace_expires_and_forces_the_lap() -> None:
    a = asm(grace_ms=5)
    r = root()
    c = mk("c", 1, r.context.span_id, 10, 500)
    a.start(r)
    a.start(c)
    t_end = time.monotonic_ns()
    assert a.end(r) == (True, [])
    assert a.expire(now_ns=t_end) == []  # before the deadline: still waiting
    deadline = a.next_deadline_ns()
    assert deadline is not None and deadline >= t_end + 5_000_000
    done = a.expire(now_ns=deadline)
    assert len(done) == 1 and done[0].late == 1 and done[0].truncated
    assert a.stats.forced == 1
    assert a.end(c) == (False, [])


def test_expire_everything_completes_all_waiting() -> None:
    a = asm(grace_ms=60_000)
    roots = [root(span_id=100 + i) for i in range(3)]
    for i, r in enumerate(roots):
        a.start(r)
        a.start(mk("c", 200 + i, r.context.span_id, 1, 2))
        a.end(r)
    assert len(a.expire(everything=True)) == 3
    assert a.pending_count() == 0


def test_nested_lap_completes_alone_and_belongs_to_the_outer_lap() -> None:
    a = asm()
    outer = root(0, 100, command="outer", span_id=10)
    inner = mk("inner", 20, 10, 10, 50, attributes={"chronograph.lap": True})
    leaf = mk("leaf", 30, 20, 15, 25)
    for s in (outer, inner, leaf):
        a.start(s)
    assert a.pending_count() == 2
    a.end(leaf)
    held, done = a.end(inner)
    assert held and [c.root.name for c in done] == ["inner"]
    assert [s.name for s in done[0].spans] == ["leaf"]
    held, done = a.end(outer)
    assert held and [c.root.name for c in done] == ["outer"]
    assert sorted(s.name for s in done[0].spans) == ["inner", "leaf"]
    assert a.pending_count() == 0


def test_outer_lap_waits_for_nested_lap_under_grace() -> None:
    a = asm(grace_ms=60_000)
    outer = root(0, 100, span_id=10)
    inner = mk("inner", 20, 10, 10, 150, attributes={"chronograph.lap": True})
    a.start(outer)
    a.start(inner)
    assert a.end(outer) == (True, [])
    held, done = a.end(inner)
    assert held
    # the nested lap completes, then the outer one it was holding open
    assert [c.root.context.span_id for c in done] == [20, 10]
    assert [s.name for s in done[1].spans] == ["inner"]


def test_spans_outside_any_lap_are_ignored() -> None:
    a = asm()
    s = mk("free", 5, None, 0, 1)  # INTERNAL root, no rule: not a lap
    a.start(s)
    assert a.pending_count() == 0
    assert a.end(s) == (False, [])


def test_auto_laps_are_local_server_and_consumer_roots() -> None:
    a = asm()
    server = mk("GET /", 1, None, 0, 1, kind=SpanKind.SERVER)
    consumer = mk("queue", 2, None, 0, 1, kind=SpanKind.CONSUMER)
    client = mk("GET out", 3, None, 0, 1, kind=SpanKind.CLIENT)
    def is_root(a: Assembler, span: Any, parent: Any = None, attrs: Any = None) -> bool:
        local = parent is None or parent.is_remote
        return a.is_lap_root(span.name, span.kind, span.attributes if attrs is None else attrs, {}, local)[0]

    assert is_root(a, server)
    assert is_root(a, consumer)
    assert not is_root(a, client)
    remote = mk("GET /", 4, None, 0, 1, kind=SpanKind.SERVER)
    from .helpers import ctx

    assert is_root(a, remote, ctx(99, remote=True), {})
    assert not is_root(a, remote, ctx(99, remote=False), {})
    off = asm(auto=False)
    assert not is_root(off, server)
    assert off.is_lap_root("x", SpanKind.INTERNAL, {"chronograph.lap": True}, {}, True)[0]


def test_server_span_under_a_local_lap_is_part_of_it_not_a_new_lap() -> None:
    a = asm()
    r = root(span_id=1)
    srv = mk("GET /inner", 2, 1, 1, 2, kind=SpanKind.SERVER)
    a.start(r)
    a.start(srv)
    assert a.pending_count() == 1
    a.end(srv)
    _, done = a.end(r)
    assert [s.name for s in done[0].spans] == ["GET /inner"]


def test_lap_rules_mark_laps_and_give_commands() -> None:
    rules = (LapRule(name="job *", command="batch job"), LapRule(attribute="tool.name"))
    a = asm(rules=rules)
    assert a.is_lap_root("job nightly", SpanKind.INTERNAL, {}, {}, True) == (True, "batch job")
    assert a.is_lap_root("call", SpanKind.INTERNAL, {"tool.name": "grep"}, {}, True) == (True, None)
    assert a.is_lap_root("call", SpanKind.INTERNAL, {}, {}, True) == (False, None)
    s = mk("job nightly", 1, None, 0, 1)
    a.start(s)
    _, done = a.end(s)
    assert done[0].command == "batch job"


def test_eviction_of_the_oldest_unfinished_lap() -> None:
    a = asm(max_pending=2)
    roots = [root(span_id=100 + i) for i in range(4)]
    kids = [mk("k", 200 + i, 100 + i, 1, 2) for i in range(4)]
    for r, k in zip(roots, kids, strict=False):
        a.start(r)
        a.start(k)
    assert a.pending_count() == 2
    assert a.stats.evicted == 2
    assert a.evicted_ids == [100, 101]  # type: ignore[attr-defined]
    # An evicted lap's children are forgotten; its root ending still yields a truncated lap.
    assert a.end(kids[0]) == (False, [])
    held, done = a.end(roots[0])
    assert held and len(done) == 1
    assert done[0].truncated and done[0].spans == [] and done[0].root is roots[0]
    # ... exactly once
    assert a.end(roots[0]) == (False, [])
    # The survivors complete normally.
    for r, k in zip(roots[2:], kids[2:], strict=False):
        a.end(k)
        held, done = a.end(r)
        assert held and len(done) == 1 and not done[0].truncated and len(done[0].spans) == 1


def test_eviction_skips_laps_whose_root_already_ended() -> None:
    a = asm(max_pending=1, grace_ms=60_000)
    first = root(span_id=1)
    a.start(first)
    a.start(mk("open", 2, 1, 0, 1))
    a.end(first)  # waiting for its open span: not evictable by age
    second = root(span_id=3)
    a.start(second)
    assert a.stats.evicted == 1
    assert a.evicted_ids == [3]  # type: ignore[attr-defined]
    assert len(a.expire(everything=True)) == 1


def test_span_cap_drops_and_counts() -> None:
    a = asm(max_spans=3)
    r = root(span_id=1)
    a.start(r)
    kids = [mk(f"k{i}", 10 + i, 1, i, i + 1) for i in range(10)]
    for k in kids:
        a.start(k)
        a.end(k)
    _, done = a.end(r)
    assert len(done[0].spans) == 3
    assert done[0].truncated
    assert a.stats.dropped_spans == 7


def test_span_cap_counts_spans_dropped_at_start() -> None:
    a = asm(max_spans=2)
    r = root(span_id=1)
    a.start(r)
    kids = [mk(f"k{i}", 10 + i, 1, i, i + 1) for i in range(5)]
    for k in kids:
        a.start(k)  # all open at once
    for k in kids:
        a.end(k)
    _, done = a.end(r)
    assert len(done[0].spans) == 2
    assert a.stats.dropped_spans == 3
    assert done[0].truncated


def test_span_cap_counts_descendants_of_dropped_spans_and_forgets_them() -> None:
    a = asm(max_spans=1)
    r = root(span_id=1)
    a.start(r)
    kept = mk("kept", 10, 1, 1, 2)
    dropped = mk("dropped", 11, 1, 1, 5)
    grandchild = mk("grandchild", 12, 11, 2, 3)
    for s in (kept, dropped, grandchild):
        a.start(s)
    assert a.stats.dropped_spans == 2  # the dropped span and, through it, its child
    for s in (grandchild, dropped, kept):
        a.end(s)
    _, done = a.end(r)
    assert [s.name for s in done[0].spans] == ["kept"]
    assert done[0].truncated
    assert a._dropped == {} and a._owner == {}  # nothing left behind for the finished lap


def test_evicted_nested_lap_does_not_hold_its_outer_lap_open() -> None:
    a = asm(max_pending=2, grace_ms=50)
    outer = root(span_id=1)
    inner = mk("inner", 2, 1, 10, 20, attributes={"chronograph.lap": True})
    a.start(outer)
    a.start(inner)
    assert a.end(outer) == (True, [])  # outer waits (grace) for the still-open inner lap
    a.start(root(span_id=3))  # over the limit: inner is the oldest lap whose root has not ended
    assert a.stats.evicted == 1
    done = a.expire(everything=True)
    assert [c.root.source for c in done] == [outer]
    assert done[0].late == 0  # the evicted inner lap is not counted as a late span of the outer
