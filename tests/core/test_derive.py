"""Every derivation rule of SPEC.md "Derivation", on spans with exact nanosecond intervals."""

from __future__ import annotations

import itertools
import sys
from decimal import Decimal

import pytest
from opentelemetry.trace import SpanKind, Status, StatusCode

from otel_chronograph import SectorSpan
from otel_chronograph.engine._derive import (
    command_from_attributes,
    critical_path,
    lap_attributes,
    status_for,
    union_ns,
)

from .helpers import MS, ROOT_ID, T0, TRACE_ID, deriver, event, mk, root, sec

R = ROOT_ID


def approx(x: float) -> object:
    return pytest.approx(x, abs=1e-9)


# -- union_ns ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intervals", "expected"),
    [
        ([], 0),
        ([(0, 10)], 10),
        ([(0, 10), (20, 30)], 20),
        ([(20, 30), (0, 10)], 20),
        ([(0, 10), (5, 15)], 15),
        ([(0, 10), (10, 20)], 20),
        ([(0, 100), (10, 20), (30, 40)], 100),
        ([(5, 5), (0, 1)], 1),
        ([(0, 10), (0, 10), (0, 10)], 10),
        ([(0, 4), (2, 6), (8, 9), (1, 3)], 7),
    ],
)
def test_union_ns(intervals: list[tuple[int, int]], expected: int) -> None:
    assert union_ns(list(intervals)) == expected


# -- sectors, other time ----------------------------------------------------------------------------


def test_sequential_sectors_like_the_seed() -> None:
    spans = [
        sec("init", 1, R, 0, 45), sec("load", 2, R, 45, 165),
        sec("exec", 3, R, 165, 250), sec("format", 4, R, 250, 300),
    ]
    lap = deriver().derive(root(0, 300), spans)
    assert list(lap.sectors) == ["init", "load", "exec", "format"]
    assert lap.sectors == {"init": 45.0, "load": 120.0, "exec": 85.0, "format": 50.0}
    assert lap.lap_ms == 300.0
    assert lap.other_ms == 0.0
    assert lap.critical_path == lap.sectors
    assert lap.critical_other_ms == 0.0
    assert lap.status == "RED"  # 300 is not below yellow_ms=300


def test_gaps_between_sectors_are_other_time() -> None:
    lap = deriver().derive(root(0, 100), [sec("a", 1, R, 10, 30), sec("b", 2, R, 50, 60)])
    assert lap.sectors == {"a": 20.0, "b": 10.0}
    assert lap.other_ms == approx(70.0)
    assert lap.critical_other_ms == approx(70.0)


def test_sectors_ordered_by_first_start_not_by_arrival_or_end() -> None:
    spans = [sec("late", 1, R, 50, 60), sec("early", 2, R, 5, 90), sec("mid", 3, R, 20, 21),
             sec("late", 4, R, 1, 2)]  # a second "late" span starting first moves "late" first
    lap = deriver().derive(root(0, 100), spans)
    assert list(lap.sectors) == ["late", "early", "mid"]


def test_same_sector_in_parallel_counts_the_union_not_the_sum() -> None:
    spans = [sec("fetch", 1, R, 0, 60), sec("fetch", 2, R, 20, 80), sec("fetch", 3, R, 90, 95)]
    lap = deriver().derive(root(0, 100), spans)
    assert lap.sectors == {"fetch": 85.0}
    assert lap.other_ms == approx(15.0)


def test_parallel_different_sectors_other_never_negative() -> None:
    spans = [sec("a", 1, R, 0, 100), sec("b", 2, R, 0, 100), sec("c", 3, R, 10, 90)]
    lap = deriver().derive(root(0, 100), spans)
    assert lap.sectors == {"a": 100.0, "b": 100.0, "c": 80.0}
    assert lap.other_ms == 0.0
    assert sum(lap.sectors.values()) > lap.lap_ms  # parallel sectors may exceed the lap, other may not
    assert sum(lap.critical_path.values()) + lap.critical_other_ms == approx(lap.lap_ms)


def test_partially_overlapping_different_sectors() -> None:
    lap = deriver().derive(root(0, 100), [sec("a", 1, R, 10, 50), sec("b", 2, R, 30, 70)])
    assert lap.sectors == {"a": 40.0, "b": 40.0}
    assert lap.other_ms == approx(40.0)  # 100 - union(10..70)


def test_non_sector_span_counts_toward_its_nearest_sector_ancestor() -> None:
    spans = [
        sec("load", 1, R, 10, 40),
        mk("SELECT", 2, 1, 15, 35),           # inside "load": no extra time
        mk("http GET", 3, 2, 20, 60),         # a load grandchild outliving its parents: load until 60
        mk("cache", 4, R, 50, 70),            # no sector ancestor: other time
        sec("exec", 5, R, 70, 90),
        mk("worker", 6, 5, 75, 85),
        mk("deep", 7, 6, 76, 84),
    ]
    lap = deriver().derive(root(0, 100), spans)
    assert lap.sectors == {"load": 50.0, "exec": 20.0}
    assert lap.other_ms == approx(30.0)  # 0..10, 60..70, 90..100
    rows = {r.name: r for r in lap.spans}
    assert rows["SELECT"].sector == "load"
    assert rows["http GET"].sector == "load"
    assert rows["deep"].sector == "exec"
    assert rows["cache"].sector is None
    assert (rows["http GET"].start_ns, rows["http GET"].end_ns) == (T0 + 20 * MS, T0 + 60 * MS)


def test_sector_time_is_the_union_of_its_spans_clipped_to_the_lap_window_only() -> None:
    # A non-sector child running past its sector parent still counts toward that sector, up to the lap end.
    lap = deriver().derive(root(0, 100), [sec("a", 1, R, 10, 20), mk("child", 2, 1, 15, 50),
                                          mk("bg", 3, 1, 18, 400)])
    assert lap.sectors == {"a": 90.0}
    assert lap.other_ms == approx(10.0)
    # The critical path still partitions the lap: children are clipped to their parent there (Jaeger).
    assert sum(lap.critical_path.values()) + lap.critical_other_ms == approx(100.0)


def test_nested_sectors_each_count_their_own_union() -> None:
    spans = [sec("outer", 1, R, 0, 80), sec("inner", 2, 1, 20, 50), mk("q", 3, 2, 30, 40),
             sec("inner", 4, 1, 45, 60)]
    lap = deriver().derive(root(0, 100), spans)
    assert lap.sectors == {"outer": 80.0, "inner": 40.0}
    assert lap.other_ms == approx(20.0)  # other = lap - union of all sector intervals
    assert {r.name: r.sector for r in lap.spans}["q"] == "inner"
    # Critical path: outer 60..80, inner 45..60 (last to finish), then outer 0..45 (the first inner
    # span ends after 45, so it is off the path).
    assert lap.critical_path == {"outer": approx(65.0), "inner": approx(15.0)}
    assert lap.critical_other_ms == approx(20.0)


def test_span_ending_after_the_root_is_clipped_to_the_lap_window() -> None:
    lap = deriver().derive(root(0, 100), [sec("a", 1, R, 80, 250), sec("b", 2, R, -50, 10)])
    assert lap.sectors == {"b": 10.0, "a": 20.0}
    assert lap.lap_ms == 100.0
    assert lap.other_ms == approx(70.0)
    assert sum(lap.critical_path.values()) + lap.critical_other_ms == approx(100.0)


def test_span_entirely_after_the_root_contributes_zero() -> None:
    lap = deriver().derive(root(0, 100), [sec("a", 1, R, 0, 50), sec("after", 2, R, 150, 200),
                                          mk("x", 3, 2, 160, 170)])
    assert lap.sectors["a"] == 50.0
    assert lap.sectors.get("after", 0.0) == 0.0
    assert lap.other_ms == approx(50.0)
    assert lap.critical_path == {"a": 50.0}
    assert min(lap.sectors.values()) >= 0


def test_orphan_spans_hang_off_the_root() -> None:
    # Parent never seen (dropped or not exported): the span still counts, as a direct child of the lap.
    lap = deriver().derive(root(0, 100), [sec("a", 1, 0xDEAD, 10, 30)])
    assert lap.sectors == {"a": 20.0}
    assert lap.span_count == 2


def test_root_span_in_the_list_is_not_counted_twice() -> None:
    r = root(0, 100)
    lap = deriver().derive(r, [r, sec("a", 1, R, 0, 10)])
    assert lap.span_count == 2
    assert lap.sectors == {"a": 10.0}


def test_zero_length_lap() -> None:
    lap = deriver().derive(root(5, 5), [sec("a", 1, R, 5, 5)])
    assert lap.lap_ms == 0.0
    assert lap.other_ms == 0.0
    assert lap.critical_path == {}
    assert lap.critical_other_ms == 0.0
    assert lap.status == "GREEN"


def test_no_spans_at_all_is_all_other() -> None:
    lap = deriver().derive(root(0, 42), [])
    assert lap.sectors == {}
    assert lap.other_ms == 42.0
    assert lap.critical_other_ms == 42.0


def test_times_are_exact_in_nanoseconds() -> None:
    r = mk("r", R, None, 0, 0, start_ns=T0, end_ns=T0 + 1_000_003,
           attributes={"chronograph.lap": True})
    a = mk("a", 1, R, 0, 0, start_ns=T0 + 1, end_ns=T0 + 2, attributes={"chronograph.sector": "a"})
    lap = deriver().derive(r, [a])
    assert lap.lap_ms == 1.000003
    assert lap.sectors == {"a": 0.000001}
    assert lap.other_ms == 1.000002
    assert (lap.start_ns, lap.end_ns) == (T0, T0 + 1_000_003)


# -- critical path ---------------------------------------------------------------------------------


def test_critical_path_follows_the_last_finishing_child() -> None:
    # Jaeger: from the root's end, the last-finishing child B; before B started, nothing else ended.
    lap = deriver().derive(root(0, 100), [sec("a", 1, R, 10, 60), sec("b", 2, R, 20, 80)])
    assert lap.critical_path == {"b": 60.0}
    assert lap.critical_other_ms == approx(40.0)
    assert lap.sectors == {"a": 50.0, "b": 60.0}


def test_critical_path_picks_earlier_children_that_end_before_the_cursor() -> None:
    spans = [sec("a", 1, R, 0, 30), sec("b", 2, R, 10, 40), sec("c", 3, R, 50, 90)]
    lap = deriver().derive(root(0, 100), spans)
    # 90..100 root, c 50..90, root 40..50, b 10..40, root 0..10 (a ends after b starts: off the path)
    assert lap.critical_path == {"c": 40.0, "b": 30.0}
    assert lap.critical_other_ms == approx(30.0)


def test_critical_path_descends_into_grandchildren() -> None:
    spans = [sec("a", 1, R, 0, 100), mk("x", 2, 1, 10, 40), sec("b", 3, 1, 50, 90), mk("y", 4, 3, 60, 70)]
    lap = deriver().derive(root(0, 100), spans)
    assert lap.critical_path == {"a": approx(60.0), "b": approx(40.0)}
    assert lap.critical_other_ms == 0.0


def test_critical_path_function_returns_a_partition() -> None:
    window = {1: (0, 100), 2: (10, 60), 3: (20, 80), 4: (25, 30), 5: (85, 95)}
    children = {1: [2, 3, 5], 3: [4]}
    sections = critical_path(1, window, children)
    # descending, contiguous, covering the root window exactly
    assert sections[0][2] == 100 and sections[-1][1] == 0
    for (_, a, _), (_, _, b) in itertools.pairwise(sections):
        assert a == b
    assert sum(b - a for _, a, b in sections) == 100
    assert [s for s, _, _ in sections] == [1, 5, 1, 3, 4, 3, 1]


def test_critical_path_is_iterative_for_deep_traces() -> None:
    depth = sys.getrecursionlimit() * 3
    window = {i: (i, 2 * depth - i) for i in range(depth)}
    children = {i: [i + 1] for i in range(depth - 1)}
    sections = critical_path(0, window, children)
    assert sum(b - a for _, a, b in sections) == 2 * depth


def test_deep_trace_derives() -> None:
    depth = 3000
    spans = [mk(f"s{i}", i + 1, (i if i else R), i * 0.01, 100 - i * 0.01) for i in range(depth)]
    spans[depth // 2] = sec("mid", depth // 2 + 1, depth // 2, (depth // 2) * 0.01, 100 - (depth // 2) * 0.01)
    lap = deriver().derive(root(0, 100), spans)
    assert sum(lap.critical_path.values()) + lap.critical_other_ms == approx(100.0)
    assert lap.sectors["mid"] == approx(100 - depth * 0.01)


# -- status -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lap_ms", "status"),
    [(0, "GREEN"), (99.999, "GREEN"), (100, "YELLOW"), (299.999, "YELLOW"), (300, "RED"), (10_000, "RED")],
)
def test_status_thresholds(lap_ms: float, status: str) -> None:
    assert status_for(lap_ms, 100, 300) == status
    assert deriver().derive(root(0, lap_ms), []).status == status


def test_status_per_command_overrides() -> None:
    d = deriver({"status": {"commands": {"faf score": {"green_ms": 50}, "slow": {"green_ms": 500,
                                                                                  "yellow_ms": 1000}}}})
    assert d.derive(root(0, 60, command="faf score"), []).status == "YELLOW"
    assert d.derive(root(0, 60, command="other"), []).status == "GREEN"
    assert d.derive(root(0, 400, command="slow"), []).status == "GREEN"
    assert d.derive(root(0, 999, command="slow"), []).status == "YELLOW"
    assert d.derive(root(0, 1000, command="slow"), []).status == "RED"
    assert d.derive(root(0, 300, command="faf score"), []).status == "RED"  # yellow_ms inherited


def test_error_root_is_red_with_error_flag() -> None:
    lap = deriver().derive(root(0, 10, status=Status(StatusCode.ERROR, "boom")), [])
    assert lap.status == "RED"
    assert lap.error is True
    assert lap.error_message == "boom"


def test_error_message_falls_back_to_the_exception_event() -> None:
    ev = event("exception", 5, **{"exception.type": "ValueError", "exception.message": "bad input"})
    lap = deriver().derive(root(0, 10, status=Status(StatusCode.ERROR), events=(ev,)), [])
    assert lap.error_message == "ValueError: bad input"
    bare = event("exception", 5, **{"exception.message": "no type"})
    child = mk("c", 1, R, 1, 2, events=(bare,))
    lap = deriver().derive(root(0, 10, status=Status(StatusCode.ERROR)), [child])
    assert lap.error_message == "no type"


def test_error_in_a_child_span_does_not_make_the_lap_an_error() -> None:
    lap = deriver().derive(root(0, 10), [mk("c", 1, R, 1, 2, status=Status(StatusCode.ERROR, "x"))])
    assert lap.error is False
    assert lap.status == "GREEN"
    assert lap.spans[0].error is True


@pytest.mark.parametrize(("on_error", "expected"), [("time", "GREEN"), ("YELLOW", "YELLOW"), ("RED", "RED"),
                                                    ("GREEN", "GREEN")])
def test_on_error_configurable(on_error: str, expected: str) -> None:
    d = deriver({"status": {"on_error": on_error}})
    lap = d.derive(root(0, 10, status=Status(StatusCode.ERROR)), [])
    assert lap.status == expected
    assert lap.error is True


def test_on_error_time_keeps_the_time_status() -> None:
    d = deriver({"status": {"on_error": "time"}})
    assert d.derive(root(0, 150, status=Status(StatusCode.ERROR)), []).status == "YELLOW"
    assert d.derive(root(0, 350, status=Status(StatusCode.ERROR)), []).status == "RED"


def test_ok_status_is_not_an_error() -> None:
    lap = deriver().derive(root(0, 10, status=Status(StatusCode.OK)), [])
    assert lap.error is False
    assert lap.error_message is None


# -- identity ---------------------------------------------------------------------------------------


def test_request_id_trace_id_and_timestamp() -> None:
    lap = deriver().derive(root(0, 10), [])
    assert lap.request_id == "req_7f8a9b0c1d2e3f40"
    assert lap.span_id == "7f8a9b0c1d2e3f40"
    assert lap.trace_id == format(TRACE_ID, "032x")
    assert len(lap.trace_id) == 32
    assert lap.timestamp == T0 // MS
    small = deriver().derive(root(0, 10, span_id=0x1), [])
    assert small.request_id == "req_0000000000000001"  # zero-padded to 16 hex digits


def test_command_sources() -> None:
    assert command_from_attributes("span", {"chronograph.command": "faf score"}) == "faf score"
    assert command_from_attributes("GET", {"http.route": "/x/{id}", "http.request.method": "GET"}) == \
        "GET /x/{id}"
    assert command_from_attributes("GET", {"http.route": "/x", "http.method": "POST"}) == "POST /x"
    assert command_from_attributes("GET", {"http.route": "/x"}) == "/x"
    assert command_from_attributes("name", {}) == "name"
    assert command_from_attributes("name", None) == "name"


def test_command_given_by_a_rule_unless_the_span_names_one() -> None:
    d = deriver()
    plain = mk("GET /x", R, None, 0, 10, kind=SpanKind.SERVER)
    assert d.derive(plain, [], command="from-rule").command == "from-rule"
    assert d.derive(plain, []).command == "GET /x"
    assert d.derive(root(0, 10, command="explicit"), [], command="from-rule").command == "explicit"


def test_tier_customer_score_session_service() -> None:
    lap = deriver().derive(root(0, 10, attributes={"chronograph.tier": "pro", "chronograph.customer": "cus_1",
                                                   "chronograph.score": 99, "session.id": "s1"}), [])
    assert (lap.tier, lap.customer, lap.score, lap.session_id) == ("pro", "cus_1", 99.0, "s1")
    assert lap.service_name == "svc-test"
    bare = deriver().derive(root(0, 10, attributes={"chronograph.score": True}), [])
    assert (bare.tier, bare.customer, bare.score) == ("free", None, None)


def test_truncated_flag_is_passed_through() -> None:
    assert deriver().derive(root(0, 10), [], truncated=True).truncated is True
    assert deriver().derive(root(0, 10), []).truncated is False


# -- cost -------------------------------------------------------------------------------------------


def _cost(config: dict, command: str = "faf score", tier: str | None = None) -> Decimal:
    attrs = {"chronograph.tier": tier} if tier is not None else {}
    return deriver(config).derive(root(0, 10, command=command, attributes=attrs), []).cost


def test_cost_is_rate_times_tier_exactly() -> None:
    cfg = {"billing": {"rates": {"faf score": "0.001"}}}
    assert _cost(cfg, tier="pro") == Decimal("0.001")
    assert _cost(cfg, tier="enterprise") == Decimal("0.002")
    assert _cost(cfg, tier="free") == 0
    assert _cost(cfg) == 0  # no tier: default_tier "free"
    c = _cost({"billing": {"rates": {"faf score": "0.1"}, "tiers": {"x": "3"}}}, tier="x")
    assert c == Decimal("0.3") and str(c) == "0.3"  # not 0.30000000000000004
    assert isinstance(c, Decimal)


def test_cost_unknown_command_uses_default_rate() -> None:
    cfg = {"billing": {"rates": {"faf score": "0.001"}, "default_rate": "0.0005"}}
    assert _cost(cfg, command="unknown", tier="pro") == Decimal("0.0005")
    assert _cost({"billing": {"rates": {"faf score": "0.001"}}}, command="unknown", tier="pro") == 0


def test_cost_unknown_tier_uses_the_unknown_tier_multiplier() -> None:
    cfg = {"billing": {"rates": {"faf score": "0.001"}}}
    assert _cost(cfg, tier="platinum") == Decimal("0.001")  # default multiplier 1
    cfg["billing"]["unknown_tier_multiplier"] = "1.5"
    assert _cost(cfg, tier="platinum") == Decimal("0.0015")


def test_cost_default_tier_configurable() -> None:
    cfg = {"billing": {"rates": {"faf score": "0.25"}, "default_tier": "enterprise"}}
    assert _cost(cfg) == Decimal("0.50")
    assert deriver(cfg).derive(root(0, 1), []).tier == "enterprise"


def test_cost_many_decimals_exact() -> None:
    cfg = {"billing": {"rates": {"c": "0.000000123456789"}, "tiers": {"t": "7.000000001"}}}
    assert _cost(cfg, command="c", tier="t") == Decimal("0.000000123456789") * Decimal("7.000000001")
    assert _cost(cfg, command="c", tier="t") == Decimal("0.000000864197523123456789")


# -- sector rules in derivation ---------------------------------------------------------------------


def test_sector_rules_by_attribute_kind_and_name_first_match_wins() -> None:
    cfg = {"sectors": {"rules": [
        {"name": "storage", "match": {"attribute": "db.system"}},
        {"name": "backend", "match": {"kind": "CLIENT"}},
        {"name": "render", "match": {"name": "template *"}},
        {"name": "sqlite", "match": {"attribute": "db.system", "value": "sqlite"}},  # never: storage first
    ]}}
    spans = [
        mk("SELECT", 1, R, 0, 10, kind=SpanKind.CLIENT, attributes={"db.system": "sqlite"}),
        mk("GET", 2, R, 10, 30, kind=SpanKind.CLIENT),
        mk("template index.html", 3, R, 30, 35),
        mk("internal", 4, R, 35, 40),
        mk("GET explicit", 5, R, 40, 50, kind=SpanKind.CLIENT, attributes={"chronograph.sector": "manual"}),
    ]
    lap = deriver(cfg).derive(root(0, 50), spans)
    assert lap.sectors == {"storage": 10.0, "backend": 20.0, "render": 5.0, "manual": 10.0}
    assert lap.other_ms == approx(5.0)


# -- events -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("flat", [True, False], ids=["flat", "nested"])
def test_a_lap_lets_go_of_its_spans_once_its_timeline_is_built(flat: bool) -> None:
    """A sink that keeps laps (the flight recorder) must not keep every span they came from."""
    import gc
    import weakref

    spans = [sec("a", 1, R, 10, 50), mk("q", 2, R if flat else 1, 20, 30)]
    refs = [weakref.ref(s) for s in spans]
    lap = deriver().derive(root(0, 100), spans)
    del spans
    gc.collect()
    assert all(r() is not None for r in refs)  # the timeline is not built yet: it needs them
    assert [s.name for s in lap.spans] == ["a", "q"] and list(lap.events) == []
    gc.collect()
    assert all(r() is None for r in refs)
    assert [s.name for s in lap.spans] == ["a", "q"]


def test_span_rows_are_tuples_until_read_then_the_same_objects_every_read() -> None:
    """Rows are kept compact (tuples the garbage collector stops tracking) until ``lap.spans`` is
    read; reading makes them once, and in every way they are what a list of SectorSpans would be."""
    from otel_chronograph._lap import Lazy

    lap = deriver().derive(root(0, 100), [sec("a", 1, R, 10, 50), mk("q", 2, 1, 20, 30)])
    spans = lap.spans
    assert isinstance(spans, Lazy)
    assert spans.compact() == (("a", "a", 1, R, 10 * MS + T0, 50 * MS + T0, False),
                               ("a", "q", 2, 1, 20 * MS + T0, 30 * MS + T0, False))
    assert lap.events == [] and len(lap.events) == 0
    first = list(spans)
    assert spans.compact() is None and list(spans) == first and spans[0] is first[0]
    assert first == [SectorSpan("a", "a", "0000000000000001", f"{R:016x}", T0 + 10 * MS, T0 + 50 * MS),
                     SectorSpan("a", "q", "0000000000000002", "0000000000000001", T0 + 20 * MS,
                                T0 + 30 * MS)]


def test_events_from_root_and_descendants_in_time_order() -> None:
    r = root(0, 100, events=(event("done", 90, ok=True), event("start", 1)))
    spans = [sec("a", 1, R, 10, 50, events=(event("Embedding Classifier", 20, confidence=0.92),)),
             mk("q", 2, 1, 20, 30, events=(event("rows", 25, n=3),))]
    lap = deriver().derive(r, spans)
    assert [e.name for e in lap.events] == ["start", "Embedding Classifier", "rows", "done"]
    e = lap.events[1]
    assert e.elapsed_ms == 20.0 and e.sector == "a" and e.span_name == "a"
    assert e.attributes == {"confidence": 0.92}
    assert lap.events[2].sector == "a" and lap.events[2].span_name == "q"
    assert lap.events[0].sector is None


def test_events_are_capped_per_lap() -> None:
    evs = tuple(event(f"e{i}", i % 100) for i in range(50))
    lap = deriver({"recorder": {"max_events_per_lap": 7}}).derive(root(0, 100, events=evs), [])
    assert len(lap.events) == 7


# -- annotations ------------------------------------------------------------------------------------


def test_annotations_carry_the_spec_attributes() -> None:
    d = deriver({"billing": {"rates": {"faf score": "0.001"}}})
    lap = d.derive(root(0, 120, attributes={"chronograph.tier": "pro"}),
                   [sec("init", 1, R, 0, 20), sec("load", 2, R, 20, 100)])
    a = lap_attributes(lap)
    assert a["chronograph.lap_ms"] == 120.0
    assert a["chronograph.other_ms"] == approx(20.0)
    assert a["chronograph.status"] == "YELLOW"
    assert a["chronograph.cost"] == "0.001"
    assert a["chronograph.request_id"] == "req_7f8a9b0c1d2e3f40"
    assert a["chronograph.sector.init.ms"] == 20.0
    assert a["chronograph.sector.load.ms"] == 80.0
    assert "chronograph.error" not in a
    err = d.derive(root(0, 1, status=Status(StatusCode.ERROR)), [])
    assert lap_attributes(err)["chronograph.error"] is True
