"""The processor in front of the exporters: annotation, forwarding, limits, failures, grace periods."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from otel_chronograph import Lap

from .conftest import Harness
from .helpers import MS, T0, wait_for

Make = Callable[..., Harness]


def start(h: Harness, name: str, at_ms: float, parent: Any = None, **kw: Any) -> Any:
    context = trace.set_span_in_context(parent) if parent is not None else None
    return h.tracer.start_span(name, context=context, start_time=T0 + round(at_ms * MS), **kw)


def end(span: Any, at_ms: float) -> None:
    span.end(end_time=T0 + round(at_ms * MS))


def by_name(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def test_root_reaches_the_exporter_annotated_and_other_spans_unchanged(make_harness: Make) -> None:
    h = make_harness({"billing": {"rates": {"faf score": "0.001"}}})
    r = start(h, "faf score", 0, attributes={"chronograph.lap": True, "chronograph.command": "faf score",
                                            "chronograph.tier": "pro", "app.key": "v"})
    s1 = start(h, "init", 0, r, attributes={"chronograph.sector": "init"})
    end(s1, 45)
    s2 = start(h, "load", 45, r, attributes={"chronograph.sector": "load"})
    q = start(h, "SELECT", 50, s2)
    end(q, 60)
    end(s2, 165)
    end(r, 200)
    exported = h.exported()
    assert [s.name for s in exported] == ["init", "SELECT", "load", "faf score"]
    (root,) = by_name(exported, "faf score")
    a = root.attributes
    assert a["app.key"] == "v"  # the app's own attributes kept
    assert a["chronograph.lap_ms"] == 200.0
    assert a["chronograph.other_ms"] == 35.0
    assert a["chronograph.status"] == "YELLOW"
    assert a["chronograph.cost"] == "0.001"
    assert a["chronograph.request_id"] == "req_" + format(r.get_span_context().span_id, "016x")
    assert a["chronograph.sector.init.ms"] == 45.0
    assert a["chronograph.sector.load.ms"] == 120.0
    assert root.context == r.get_span_context()
    assert (root.start_time, root.end_time) == (T0, T0 + 200 * MS)
    assert root.parent is None and root.kind == SpanKind.INTERNAL
    assert root.instrumentation_scope.name == "tests.core"
    assert root.resource is r.resource
    assert root.status.status_code == r.status.status_code
    for name in ("init", "SELECT", "load"):
        (s,) = by_name(exported, name)
        assert not any(k.startswith("chronograph.") and k != "chronograph.sector" for k in s.attributes)
    assert h.processor.stats["laps_derived"] == 1
    assert len(h.laps) == 1


def test_the_annotated_root_keeps_events_links_and_their_dropped_counts(make_harness: Make) -> None:
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.trace import Link

    h = make_harness()
    provider = TracerProvider(span_limits=SpanLimits(max_events=2))
    provider.add_span_processor(h.processor)
    tracer = provider.get_tracer("tests.core")
    other = start(h, "elsewhere", 0)
    r = tracer.start_span("faf score", attributes={"chronograph.lap": True},
                          links=[Link(other.get_span_context(), {"why": "retry"})])
    for i in range(3):
        r.add_event(f"e{i}", {"i": i})
    r.end()
    (root,) = h.annotated()
    assert [e.name for e in root.events] == ["e1", "e2"] and root.dropped_events == 1
    assert root.events[1].attributes == {"i": 2}
    assert [(link.context, dict(link.attributes or {})) for link in root.links] == [
        (other.get_span_context(), {"why": "retry"})]
    assert root.attributes["chronograph.lap"] is True and "chronograph.lap_ms" in root.attributes


def test_the_annotated_copy_is_the_same_with_positional_or_keyword_arguments(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # Positional only when the SDK's ReadableSpan has the expected parameters; keywords otherwise.
    from opentelemetry.sdk.trace import SpanLimits, TracerProvider
    from opentelemetry.trace import Link, Status, StatusCode

    from otel_chronograph.sources import _sdk

    tracer = TracerProvider(span_limits=SpanLimits(max_events=1)).get_tracer("tests.core")
    other = tracer.start_span("other")
    with tracer.start_as_current_span("parent"):
        r = tracer.start_span("root", kind=SpanKind.SERVER, attributes={"a": 1, "b": "x"},
                              links=[Link(other.get_span_context())])
    r.add_event("e0")
    r.add_event("e1")
    r.set_status(Status(StatusCode.ERROR, "boom"))
    r.end()

    def public(s: ReadableSpan) -> tuple[Any, ...]:
        return (s.name, s.context, s.parent, s.resource, dict(s.attributes or {}), s.events, s.links, s.kind,
                s.status, s.start_time, s.end_time, s.instrumentation_scope, s.dropped_events,
                s.dropped_links, type(s))

    assert _sdk._POSITIONAL
    copies = [_sdk.annotated_copy(r, {"chronograph.lap": True})]
    monkeypatch.setattr(_sdk, "_POSITIONAL", False)
    copies.append(_sdk.annotated_copy(r, {"chronograph.lap": True}))
    assert public(copies[0]) == public(copies[1])
    assert public(copies[0])[4] == {"a": 1, "b": "x", "chronograph.lap": True}
    assert copies[0].dropped_events == 1 and copies[0].status.description == "boom"
    assert copies[0].parent is not None and copies[0].parent == r.parent
    bare = ReadableSpan("bare", events=(), attributes=None)
    assert dict(_sdk.annotated_copy(bare, {"chronograph.lap": True}).attributes or {}) == {
        "chronograph.lap": True}


def test_spans_outside_laps_pass_through_unchanged(harness: Harness) -> None:
    s = start(harness, "background", 0)
    c = start(harness, "child", 1, s)
    end(c, 2)
    end(s, 3)
    assert [x.name for x in harness.exported()] == ["child", "background"]
    assert harness.annotated() == []
    assert harness.laps == []
    assert harness.processor.pending_laps() == 0


def test_auto_lap_server_root_with_http_route(harness: Harness) -> None:
    srv = start(harness, "GET /items/{id}", 0, kind=SpanKind.SERVER,
                attributes={"http.route": "/items/{id}", "http.request.method": "GET"})
    cli = start(harness, "GET", 5, srv, kind=SpanKind.CLIENT)
    end(cli, 10)
    end(srv, 20)
    (root,) = harness.annotated()
    assert root.attributes["chronograph.command"] == "GET /items/{id}"
    assert root.attributes["chronograph.lap"] is True
    assert harness.laps[0].command == "GET /items/{id}"


def test_server_span_with_remote_parent_is_a_lap_and_local_child_server_is_not(harness: Harness) -> None:
    remote = trace.NonRecordingSpan(trace.SpanContext(
        0xABC, 0xDEF, is_remote=True, trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED)))
    srv = start(harness, "consume", 0, remote, kind=SpanKind.CONSUMER)
    inner = start(harness, "inner server", 1, srv, kind=SpanKind.SERVER)
    end(inner, 2)
    end(srv, 3)
    assert [s.name for s in harness.annotated()] == ["consume"]
    assert harness.laps[0].trace_id == format(0xABC, "032x")


def test_auto_server_roots_can_be_switched_off(make_harness: Make) -> None:
    h = make_harness({"laps": {"auto_server_roots": False}})
    end(start(h, "GET /", 0, kind=SpanKind.SERVER), 1)
    assert h.annotated() == [] and h.laps == []


def test_lap_rules_are_evaluated_at_span_start(make_harness: Make) -> None:
    h = make_harness({"laps": {"match": [{"attribute": "tool.name", "command": "tool call"}]}})
    a = start(h, "call a", 0, attributes={"tool.name": "grep"})
    end(a, 10)
    b = start(h, "call b", 0)
    b.set_attribute("tool.name", "grep")  # too late: rules see only start attributes
    end(b, 10)
    assert [s.name for s in h.annotated()] == ["call a"]
    assert h.laps[0].command == "tool call"


def test_sector_rules_map_auto_instrumented_spans(make_harness: Make) -> None:
    h = make_harness({"sectors": {"rules": [{"name": "storage", "match": {"attribute": "db.system"}},
                                            {"name": "backend", "match": {"kind": "CLIENT"}}]}})
    srv = start(h, "GET /", 0, kind=SpanKind.SERVER)
    end(start(h, "SELECT", 10, srv, kind=SpanKind.CLIENT, attributes={"db.system": "sqlite"}), 30)
    end(start(h, "GET peer", 30, srv, kind=SpanKind.CLIENT), 70)
    end(srv, 100)
    (root,) = h.annotated()
    assert root.attributes["chronograph.sector.storage.ms"] == 20.0
    assert root.attributes["chronograph.sector.backend.ms"] == 40.0
    assert list(h.laps[0].sectors) == ["storage", "backend"]


def test_error_lap_via_api(harness: Harness) -> None:
    with pytest.raises(RuntimeError, match="boom"), harness.lap("explode") as handle:
        raise RuntimeError("boom")
    lap = handle.telemetry
    assert lap is not None and lap.error is True and lap.status == "RED"
    assert lap.error_message and "boom" in lap.error_message
    (root,) = harness.annotated()
    assert root.attributes["chronograph.error"] is True
    assert root.attributes["chronograph.status"] == "RED"


def test_late_spans_with_zero_grace(harness: Harness) -> None:
    r = start(harness, "lap", 0, attributes={"chronograph.lap": True})
    late = start(harness, "late", 10, r, attributes={"chronograph.sector": "bg"})
    end(r, 100)
    assert len(harness.laps) == 1  # completed at root end
    assert harness.laps[0].truncated
    assert harness.laps[0].sectors == {}
    assert harness.processor.stats["late_spans"] == 1
    end(late, 200)
    assert [s.name for s in harness.exported()] == ["lap", "late"]  # the late span still exported
    assert len(harness.laps) == 1


def test_grace_period_waits_for_spans_ending_after_the_root(make_harness: Make) -> None:
    h = make_harness({"laps": {"grace_ms": 60_000}})
    r = start(h, "lap", 0, attributes={"chronograph.lap": True})
    s = start(h, "flush", 50, r, attributes={"chronograph.sector": "flush"})
    end(r, 100)
    assert h.laps == [] and h.exported() == []  # root held back while waiting
    assert h.processor.pending_laps() == 1
    end(s, 250)  # ends after the root: clipped to the lap window
    assert len(h.laps) == 1
    lap = h.laps[0]
    assert lap.sectors == {"flush": 50.0}
    assert lap.lap_ms == 100.0 and not lap.truncated
    assert [x.name for x in h.exported()] == ["flush", "lap"]
    assert h.processor.stats["forced"] == 0


def test_grace_period_expires_in_the_background(make_harness: Make) -> None:
    h = make_harness({"laps": {"grace_ms": 20}})
    r = start(h, "lap", 0, attributes={"chronograph.lap": True})
    open_span = start(h, "never ends in time", 1, r)
    end(r, 100)
    assert h.laps == []
    wait_for(lambda: h.laps, 5.0, "the sweeper to force the lap")
    assert h.laps[0].truncated
    assert h.processor.stats["forced"] == 1
    assert h.processor.stats["late_spans"] == 1
    assert len(h.annotated()) == 1
    end(open_span, 500)
    assert len(h.laps) == 1
    assert len(h.exported()) == 2


def test_shutdown_completes_laps_still_in_their_grace_period(make_harness: Make) -> None:
    h = make_harness({"laps": {"grace_ms": 600_000}})
    r = start(h, "lap", 0, attributes={"chronograph.lap": True})
    start(h, "open", 1, r)
    end(r, 10)
    assert h.laps == []
    h.processor.shutdown()
    assert len(h.laps) == 1
    assert len(h.exporter.get_finished_spans()) == 1


def test_eviction_at_max_pending_is_counted_and_the_root_still_yields_a_lap(make_harness: Make) -> None:
    h = make_harness({"laps": {"max_pending_traces": 3}})
    roots = [start(h, f"lap{i}", i, attributes={"chronograph.lap": True}) for i in range(5)]
    kids = [start(h, "k", i + 1, r, attributes={"chronograph.sector": "k"}) for i, r in enumerate(roots)]
    assert h.processor.stats["evicted"] == 2
    assert h.processor.pending_laps() == 3
    for k in kids:
        end(k, 50)
    for r in roots:
        end(r, 100)
    assert len(h.laps) == 5  # every lap derived, evicted ones truncated
    by = {lap.command: lap for lap in h.laps}
    assert by["lap0"].truncated and by["lap1"].truncated
    assert by["lap0"].sectors == {}
    assert not by["lap4"].truncated and by["lap4"].sectors == {"k": 45.0}
    assert len(h.annotated()) == 5
    assert len(h.exported()) == 10  # nothing lost on the way to the exporter
    points = h.metrics()["chronograph.evicted_traces"]
    assert [p.value for p in points] == [2]


def test_span_cap_per_trace(make_harness: Make) -> None:
    h = make_harness({"laps": {"max_spans_per_trace": 5}})
    r = start(h, "lap", 0, attributes={"chronograph.lap": True})
    for i in range(12):
        end(start(h, f"c{i}", i, r, attributes={"chronograph.sector": "c"}), i + 1)
    end(r, 100)
    lap = h.laps[0]
    assert lap.truncated and lap.span_count == 6
    assert lap.sectors == {"c": 5.0}
    assert h.processor.stats["dropped_spans"] == 7
    assert len(h.exported()) == 13


def test_failing_sink_never_reaches_the_app(harness: Harness) -> None:
    def broken(lap: Lap) -> None:
        raise RuntimeError("sink down")

    harness.processor.add_sink(broken, deferred=False)
    harness.processor.add_sink(broken, deferred=True)
    with harness.lap("cmd") as handle, harness.sector("s"):
        pass
    assert handle.telemetry is not None
    assert len(harness.annotated()) == 1
    harness.processor.force_flush()
    assert harness.processor.stats["failures"] == 2
    with harness.lap("cmd"):
        pass
    assert len(harness.annotated()) == 2


def test_failing_derivation_exports_the_root_unannotated(harness: Harness, monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    def broken(*a: Any, **k: Any) -> Any:
        raise ValueError("broken rule")

    # A step every derivation runs (a plain chronograph.sector text is read without sector_of).
    monkeypatch.setattr(harness.processor.engine.deriver, "_identify", broken)
    with harness.lap("cmd") as handle, harness.sector("s"):
        pass
    assert handle.telemetry is None
    assert [s.name for s in harness.exported()] == ["s", "cmd"]
    assert harness.annotated() == []
    assert harness.processor.stats["failures"] == 1


def test_failing_lap_rule_at_start_exports_the_span_unchanged(make_harness: Make,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    h = make_harness()

    def broken(*a: Any, **k: Any) -> Any:
        raise KeyError("rule")

    monkeypatch.setattr(h.processor._assembler, "_decide", broken)
    s = start(h, "plain", 0)
    end(s, 1)
    assert [x.name for x in h.exported()] == ["plain"]
    assert h.processor.stats["failures"] == 1


def test_failing_assembly_at_end_exports_the_span(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("assembly")

    monkeypatch.setattr(harness.processor._assembler, "end_item", broken)
    with harness.lap("cmd"):
        pass
    assert [x.name for x in harness.exported()] == ["cmd"]
    assert harness.processor.stats["failures"] == 1


def test_failing_records_export_the_lap_root_unannotated(harness: Harness,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Records are made when a lap completes, after its root was held: if they cannot be made, the
    root still goes out (unannotated) and the failure is counted, not raised into the application."""
    from otel_chronograph.sources import _processor

    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("records")

    monkeypatch.setattr(_processor, "records_of", broken)
    with harness.lap("cmd"), harness.sector("s"):
        pass
    assert sorted(x.name for x in harness.exported()) == ["cmd", "s"]
    assert harness.annotated() == []
    assert harness.processor.stats["failures"] == 1


def test_disabled_processor_forwards_everything_unchanged(make_harness: Make) -> None:
    h = make_harness({"enabled": False})
    with h.lap("cmd") as handle, h.sector("s"):
        pass
    assert handle.telemetry is None
    assert [s.name for s in h.exported()] == ["s", "cmd"]
    assert h.annotated() == []
    assert "chronograph.lap.duration" not in h.metrics()


def test_metrics_recorded(make_harness: Make) -> None:
    h = make_harness({"billing": {"rates": {"faf score": "0.001"}}})
    for tier in ("pro", "pro", "enterprise"):
        r = start(h, "faf score", 0, attributes={"chronograph.lap": True, "chronograph.command": "faf score",
                                                "chronograph.tier": tier})
        end(start(h, "init", 0, r, attributes={"chronograph.sector": "init"}), 20)
        end(r, 150)
    m = h.metrics()
    assert sorted(tuple(sorted(p.attributes.items())) for p in m["chronograph.lap.duration"]) == [
        (("chronograph.command", "faf score"), ("chronograph.status", "YELLOW"), ("chronograph.tier", t))
        for t in ("enterprise", "pro")]
    lap_points = {p.attributes["chronograph.tier"]: p for p in m["chronograph.lap.duration"]}
    assert lap_points["pro"].count == 2 and lap_points["pro"].sum == 300.0
    assert lap_points["enterprise"].count == 1
    (sector_point,) = m["chronograph.sector.duration"]
    assert dict(sector_point.attributes) == {"chronograph.command": "faf score", "chronograph.sector": "init"}
    assert sector_point.count == 3 and sector_point.sum == 60.0
    cost = {p.attributes["chronograph.tier"]: p.value for p in m["chronograph.cost"]}
    assert cost == {"pro": float(Decimal("0.002")), "enterprise": float(Decimal("0.002"))}
    assert [p.value for p in m["chronograph.laps"]] == [3]
    assert [p.value for p in m["chronograph.pending_traces"]] == [0]


def test_force_flush_and_shutdown_reach_the_wrapped_processors(harness: Harness) -> None:
    calls: list[str] = []

    class Probe:
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            calls.append("start")

        def on_end(self, span: Any) -> None:
            calls.append("end")

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            calls.append("flush")
            return True

        def shutdown(self) -> None:
            calls.append("shutdown")

    harness.processor.add_span_processor(Probe())  # type: ignore[arg-type]
    with harness.lap("x"):
        pass
    assert harness.processor.force_flush() is True
    harness.processor.shutdown()
    harness.processor.shutdown()  # idempotent
    assert calls == ["start", "end", "flush", "shutdown"]


# -- the deferred sink queue ------------------------------------------------------------------------


def _some_laps(n: int) -> list[Lap]:
    from .helpers import deriver, root

    d = deriver()
    return [d.derive(root(0, i, span_id=i + 1), []) for i in range(n)]


def test_deferred_queue_overflow_is_counted_not_blocking() -> None:
    import threading

    from otel_chronograph._pipeline import DeferredSinks

    release = threading.Event()
    seen: list[str] = []

    def slow(lap: Lap) -> None:
        release.wait(30)
        seen.append(lap.request_id)

    q = DeferredSinks([slow], max_queue=3, batch=1)
    laps = _some_laps(10)
    q.put(laps[0])
    wait_for(lambda: q.depth() == 0, what="the worker to take the first lap")  # now blocked in slow()
    for lap in laps[1:]:
        q.put(lap)  # returns at once even though the sink is stuck
    assert q.depth() == 3 and q.dropped == 6
    release.set()
    assert q.flush(10)
    assert seen == [lap.request_id for lap in laps[:4]]
    q.shutdown(10)


def test_a_queued_lap_lets_go_of_its_span_records_before_it_waits() -> None:
    """Laps wait in the deferred queue (up to its interval, hundreds under load): they build their
    timeline first, so the span records they were derived from are not kept alive meanwhile."""
    import gc
    import threading
    import weakref

    from otel_chronograph._pipeline import DeferredSinks

    from .helpers import ROOT_ID, deriver, mk, root

    release = threading.Event()
    q = DeferredSinks([lambda lap: release.wait(30) and None], batch=1000)
    spans = [mk("q", 1, ROOT_ID, 1, 2, attributes={"chronograph.sector": "db"})]
    ref = weakref.ref(spans[0])
    lap = deriver().derive(root(0, 10), spans)
    del spans
    q.put(lap)
    gc.collect()
    assert ref() is None
    assert [(s.name, s.sector) for s in lap.spans] == [("q", "db")]  # the timeline is all there
    release.set()
    assert q.shutdown(10)


def test_a_lap_whose_timeline_fails_is_queued_without_raising() -> None:
    """The queue builds a lap's timeline on the lap's path: a failure there must not reach the
    application; the sinks meet it again in the background, where it is counted."""
    from dataclasses import replace

    from otel_chronograph._lap import Lazy
    from otel_chronograph._pipeline import DeferredSinks

    def broken() -> list[Any]:
        raise RuntimeError("timeline")

    lap = replace(_some_laps(1)[0], spans=Lazy(broken))
    def reads_spans(lap: Lap) -> None:
        list(lap.spans)

    q = DeferredSinks([reads_spans])
    q.put(lap)  # does not raise
    assert q.shutdown(10)
    assert q.failures == [1]  # the sink's own attempt, counted once


def test_deferred_queue_started_from_many_threads_at_once() -> None:
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from otel_chronograph._pipeline import DeferredSinks

    seen: list[str] = []
    lock = threading.Lock()

    def sink(lap: Lap) -> None:
        with lock:
            seen.append(lap.request_id)

    laps = _some_laps(64)
    for _ in range(5):
        q = DeferredSinks([sink], batch=8)
        seen.clear()
        gate = threading.Barrier(len(laps))

        def put(lap: Lap, q: DeferredSinks = q, gate: threading.Barrier = gate) -> None:
            gate.wait(10)
            q.put(lap)

        with ThreadPoolExecutor(len(laps)) as pool:
            list(pool.map(put, laps))
        q.shutdown(10)  # must not fail joining a worker that was not started yet
        assert sorted(seen) == sorted(lap.request_id for lap in laps)  # each exactly once


def test_environment_overrides_reach_install(make_harness: Make, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHRONOGRAPH_TIER", "enterprise")
    h = make_harness({"billing": {"rates": {"cmd": "0.25"}}})
    with h.lap("cmd") as handle:
        pass
    assert (handle.telemetry.tier, handle.telemetry.cost) == ("enterprise", Decimal("0.50"))
    monkeypatch.setenv("CHRONOGRAPH_ENABLED", "false")
    off = make_harness()
    with off.lap("cmd") as handle:
        pass
    assert handle.telemetry is None and off.annotated() == [] and len(off.exported()) == 1
