"""Hypothesis properties of the derivation over random span trees.

Intervals are whole milliseconds so an independent oracle can count covered 1 ms cells exactly:
parallel, nested and overlapping spans, spans starting before the lap or ending after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry import trace

from otel_chronograph.engine._derive import Deriver, command_from_attributes, status_for
from otel_chronograph.sources._sdk import record_of

from .conftest import Harness
from .helpers import MS, ROOT_ID, T0, deriver, event, mk, root

SECTORS = ("a", "b", "c")
TOL = 1e-9


@dataclass(frozen=True)
class Node:
    sid: int
    parent: int  # ROOT_ID or an earlier node's sid
    start: int  # ms relative to the lap start
    end: int
    sector: str | None


@dataclass(frozen=True)
class Tree:
    lap: int  # lap length, ms
    nodes: tuple[Node, ...]


@st.composite
def trees(draw: st.DrawFn, max_spans: int = 14) -> Tree:
    lap = draw(st.integers(0, 60))
    n = draw(st.integers(0, max_spans))
    nodes: list[Node] = []
    for i in range(n):
        parent = draw(st.sampled_from([ROOT_ID, *(x.sid for x in nodes)]))
        start = draw(st.integers(-10, lap + 10))
        end = start + draw(st.integers(0, 50))
        sector = draw(st.sampled_from((None, *SECTORS)))
        nodes.append(Node(i + 1, parent, start, end, sector))
    return Tree(lap, tuple(nodes))


def spans_of(tree: Tree) -> list[Any]:
    return [mk(f"n{x.sid}", x.sid, x.parent, x.start, x.end,
               attributes={"chronograph.sector": x.sector} if x.sector else {}) for x in tree.nodes]


def effective_sector(tree: Tree, node: Node) -> str | None:
    by_id = {x.sid: x for x in tree.nodes}
    cur: Node | None = node
    while cur is not None:
        if cur.sector is not None:
            return cur.sector
        cur = by_id.get(cur.parent)
    return None


def cells(tree: Tree, node: Node) -> Iterator[int]:
    """The 1 ms cells of the lap window the node covers."""
    return iter(range(max(node.start, 0), min(node.end, tree.lap)))


def oracle_sectors(tree: Tree) -> tuple[dict[str, int], int]:
    per: dict[str, set[int]] = {}
    first: dict[str, int] = {}
    for node in tree.nodes:
        name = effective_sector(tree, node)
        if name is None:
            continue
        per.setdefault(name, set()).update(cells(tree, node))
        first[name] = min(first.get(name, node.start), node.start)
    order = sorted(first, key=lambda n: (first[n], n))
    covered = set().union(*per.values()) if per else set()
    return {n: len(per[n]) for n in order}, tree.lap - len(covered)


@settings(max_examples=300, deadline=None)
@given(trees())
def test_sector_unions_match_a_cell_counting_oracle(tree: Tree) -> None:
    lap = deriver().derive(root(0, tree.lap), spans_of(tree))
    sectors, other = oracle_sectors(tree)
    assert lap.sectors == {n: float(v) for n, v in sectors.items()}
    assert list(lap.sectors) == list(sectors)  # ordered by first start
    assert lap.other_ms == float(other)
    assert lap.lap_ms == float(tree.lap)


@settings(max_examples=300, deadline=None)
@given(trees())
def test_invariants(tree: Tree) -> None:
    lap = deriver().derive(root(0, tree.lap), spans_of(tree))
    # nothing negative
    assert lap.lap_ms >= 0 and lap.other_ms >= 0 and lap.critical_other_ms >= 0
    assert all(v >= 0 for v in lap.sectors.values())
    assert all(v >= 0 for v in lap.critical_path.values())
    # each sector's union, and the union of all sectors, fit in the lap
    assert all(v <= lap.lap_ms + TOL for v in lap.sectors.values())
    covered = lap.lap_ms - lap.other_ms
    assert 0 <= covered <= lap.lap_ms + TOL
    # per-sector values add up to at least the covered time (more when sectors run in parallel)
    assert sum(lap.sectors.values()) >= covered - TOL
    # critical-path shares plus critical other are the lap time
    assert sum(lap.critical_path.values()) + lap.critical_other_ms == pytest.approx(lap.lap_ms, abs=TOL)
    # a sector's critical-path share is time that sector's spans cover
    for name, share in lap.critical_path.items():
        assert share <= lap.sectors[name] + TOL
    assert lap.critical_other_ms >= lap.other_ms - TOL  # uncovered time is never on a sector's path


def jaeger(tree: Tree) -> dict[str | None, int]:
    """Reference critical path (recursive, straight from Jaeger's description) -> ms per sector."""
    win: dict[int, tuple[int, int]] = {ROOT_ID: (0, tree.lap)}
    kids: dict[int, list[int]] = {}
    sector: dict[int, str | None] = {ROOT_ID: None}
    for node in tree.nodes:  # parents come before children
        ps, pe = win[node.parent]
        a, b = max(node.start, ps), min(node.end, pe)
        win[node.sid] = (a, max(a, b))
        sector[node.sid] = node.sector if node.sector is not None else sector[node.parent]
        if b > a:
            kids.setdefault(node.parent, []).append(node.sid)
    out: dict[str | None, int] = {}

    def walk(sid: int, cursor: int) -> None:
        start = win[sid][0]
        for child in sorted(kids.get(sid, []), key=lambda k: win[k][1], reverse=True):
            c_start, c_end = win[child]
            if c_end <= cursor:
                out[sector[sid]] = out.get(sector[sid], 0) + cursor - c_end
                walk(child, c_end)
                cursor = c_start
        out[sector[sid]] = out.get(sector[sid], 0) + max(cursor - start, 0)

    walk(ROOT_ID, tree.lap)
    return {k: v for k, v in out.items() if v}


def has_sibling_end_ties(tree: Tree) -> bool:
    win: dict[int, tuple[int, int]] = {ROOT_ID: (0, tree.lap)}
    ends: dict[int, list[int]] = {}
    for node in tree.nodes:
        ps, pe = win[node.parent]
        a, b = max(node.start, ps), min(node.end, pe)
        win[node.sid] = (a, max(a, b))
        if b > a:
            ends.setdefault(node.parent, []).append(b)
    return any(len(v) != len(set(v)) for v in ends.values())


@settings(max_examples=300, deadline=None)
@given(trees())
def test_critical_path_matches_a_recursive_reference(tree: Tree) -> None:
    lap = deriver().derive(root(0, tree.lap), spans_of(tree))
    ref = jaeger(tree)
    assert sum(ref.values()) == tree.lap
    if not has_sibling_end_ties(tree):  # with ties either child is a valid choice
        assert lap.critical_path == {k: float(v) for k, v in ref.items() if k is not None}
        assert lap.critical_other_ms == float(ref.get(None, 0))


@st.composite
def flat_trees(draw: st.DrawFn) -> Tree:
    """Every span a direct child of the root (the derivation's fast path), ends tied often."""
    lap = draw(st.integers(0, 30))
    n = draw(st.integers(0, 8))
    nodes = []
    for i in range(n):
        start = draw(st.integers(-5, lap + 5))
        nodes.append(Node(i + 1, ROOT_ID, start, start + draw(st.integers(0, 20)),
                          draw(st.sampled_from((None, *SECTORS)))))
    return Tree(lap, tuple(nodes))


def general_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from otel_chronograph.engine import _derive

    monkeypatch.setattr(_derive, "_flat", lambda *args: None)


def fast_and_general(monkeypatch: pytest.MonkeyPatch, r: Any, spans: Any) -> tuple[Any, Any]:
    """The same lap derived twice: as derive() does (fast paths on), and by the general steps only."""
    d = deriver()
    fast = d.derive(r, spans)
    with monkeypatch.context() as m:
        general_only(m)
        slow = d.derive(r, spans)
    return fast, slow


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=st.one_of(flat_trees(), trees()), dup=st.booleans(), unset_parent=st.booleans(),
       events=st.booleans())
def test_the_flat_fast_path_derives_what_the_general_steps_derive(
        monkeypatch: pytest.MonkeyPatch, tree: Tree, dup: bool, unset_parent: bool, events: bool) -> None:
    """Same sectors (and order), other time, critical path, span count and timeline, in every shape:
    duplicates, the root in the list, children without a parent id, spans outside the lap window,
    events at the same instant on several spans."""
    r = root(0, tree.lap, events=(event("r", 0),) if events else ())
    spans = spans_of(tree)
    if events:
        spans = [mk(f"n{x.sid}", x.sid, x.parent, x.start, x.end,
                    attributes={"chronograph.sector": x.sector} if x.sector else {},
                    events=(event(f"e{x.sid}", max(x.start, 0)), event(f"z{x.sid}", 0)))
                 for x in tree.nodes]
    if unset_parent and spans:
        spans[0] = mk("orphan", 1, None, tree.nodes[0].start, tree.nodes[0].end)
    if dup and spans:
        spans = [*spans, r, spans[0]]
    fast, slow = fast_and_general(monkeypatch, r, spans)
    assert list(fast.sectors.items()) == list(slow.sectors.items())
    assert fast.other_ms == slow.other_ms
    assert list(fast.critical_path.items()) == list(slow.critical_path.items())
    assert fast.critical_other_ms == slow.critical_other_ms
    assert fast.span_count == slow.span_count
    assert list(fast.spans) == list(slow.spans) and list(fast.events) == list(slow.events)
    rows = list(fast.spans)
    assert rows == sorted(rows, key=lambda r: (r.start_ns, r.span_id))  # a waterfall's order
    assert [e.timestamp_ns for e in fast.events] == sorted(e.timestamp_ns for e in fast.events)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=flat_trees(), as_=st.sampled_from((str, lambda v: [v, "x"], lambda v: (v,), len)))
def test_the_flat_fast_path_reads_any_sector_value_like_sector_of(
        monkeypatch: pytest.MonkeyPatch, tree: Tree, as_: Any) -> None:
    """Without sector rules the fast path reads ``chronograph.sector`` itself: a text as it is, any
    other value (a sequence, a number) the way ``sector_of`` does."""
    r = root(0, tree.lap)
    spans = [mk(f"n{x.sid}", x.sid, x.parent, x.start, x.end,
                attributes={"chronograph.sector": as_(x.sector)} if x.sector else {}) for x in tree.nodes]
    fast, slow = fast_and_general(monkeypatch, r, spans)
    assert list(fast.sectors.items()) == list(slow.sectors.items())
    assert list(fast.critical_path.items()) == list(slow.critical_path.items())
    assert list(fast.spans) == list(slow.spans)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**12), st.integers(1, 10**9), st.lists(st.tuples(st.integers(0, 10**12),
                                                                          st.integers(0, 10**9)), max_size=8))
def test_ns_precision_partition_is_exact(lap_ns: int, scale: int, raw: list[tuple[int, int]]) -> None:
    """With arbitrary nanosecond intervals, shares + other == lap within 1e-9 ms."""
    r = mk("r", ROOT_ID, None, 0, 0, start_ns=T0, end_ns=T0 + lap_ns % (10**11),
           attributes={"chronograph.lap": True})
    spans = [mk(f"s{i}", i + 1, ROOT_ID if i % 2 == 0 else i, 0, 0, start_ns=T0 + a % (10**11) - scale,
                end_ns=T0 + a % (10**11) + b, attributes={"chronograph.sector": SECTORS[i % 3]})
             for i, (a, b) in enumerate(raw)]
    lap = deriver().derive(r, spans)
    total_ns = round(sum(lap.critical_path.values()) * MS + lap.critical_other_ms * MS)
    assert abs(total_ns - (lap_ns % (10**11))) <= 1 + lap.lap_ms * MS * 1e-15
    assert sum(lap.critical_path.values()) + lap.critical_other_ms == pytest.approx(lap.lap_ms, rel=1e-12,
                                                                                     abs=1e-9)
    assert lap.other_ms >= 0
    assert all(0 <= v <= lap.lap_ms + TOL for v in lap.sectors.values())


# -- cost -------------------------------------------------------------------------------------------

decimal_text = st.builds(
    lambda digits, exp: str(Decimal(digits).scaleb(-exp)),
    st.integers(0, 10**12 - 1), st.integers(0, 12),
)


@settings(max_examples=300, deadline=None)
@given(rate=decimal_text, mult=decimal_text, default=decimal_text, unknown=decimal_text,
       tier=st.sampled_from(["pro", "gold", None]), known=st.booleans())
def test_cost_is_exact_to_the_last_decimal(rate: str, mult: str, default: str, unknown: str,
                                           tier: str | None, known: bool) -> None:
    cfg = {"billing": {"rates": {"cmd": rate}, "tiers": {"pro": mult, "free": "0"},
                       "default_rate": default, "unknown_tier_multiplier": unknown}}
    d: Deriver = deriver(cfg)
    command = "cmd" if known else "other"
    attrs = {"chronograph.tier": tier} if tier is not None else {}
    lap = d.derive(root(0, 1, command=command, attributes=attrs), [])
    r = Decimal(rate if known else default)
    m = {"pro": Decimal(mult), "gold": Decimal(unknown), None: Decimal(0)}[tier]
    # independent exact arithmetic: integers scaled by powers of ten
    rs, ms_ = r.as_tuple(), m.as_tuple()
    r_int = int("".join(map(str, rs.digits)) or "0")
    m_int = int("".join(map(str, ms_.digits)) or "0")
    exact = Decimal(r_int * m_int).scaleb(int(rs.exponent) + int(ms_.exponent))
    assert lap.cost == exact
    assert lap.cost == r * m
    assert Decimal(lap.to_json()["billing"]["cost"]) == exact


# -- through the processor ---------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree=trees(max_spans=10), order=st.randoms(use_true_random=False))
def test_processor_derives_what_the_spans_say_whatever_the_end_order(make_harness: Any, tree: Tree,
                                                                     order: Any) -> None:
    """All spans ended within the grace period: the lap equals a derivation over all of them."""
    h: Harness = make_harness({"laps": {"grace_ms": 600_000}, "recorder": {"enabled": False}})
    t0 = T0
    r = h.tracer.start_span("lap", start_time=t0, attributes={"chronograph.lap": True})
    live = {ROOT_ID: r}
    for node in tree.nodes:
        parent = live[node.parent]
        attrs = {"chronograph.sector": node.sector} if node.sector else {}
        live[node.sid] = h.tracer.start_span(f"n{node.sid}", context=trace.set_span_in_context(parent),
                                             start_time=t0 + node.start * MS, attributes=attrs)
    ends = [(ROOT_ID, tree.lap), *((x.sid, x.end) for x in tree.nodes)]
    order.shuffle(ends)
    for sid, end in ends:
        live[sid].end(end_time=t0 + end * MS)
    assert len(h.laps) == 1
    lap = h.laps[0]
    exported = h.exported()
    assert len(exported) == len(tree.nodes) + 1
    (annotated,) = h.annotated()
    others = [s for s in exported if s is not annotated]
    expected = h.processor.engine.deriver.derive(record_of(annotated), [record_of(s) for s in others])
    assert lap.sectors == expected.sectors
    assert lap.other_ms == expected.other_ms
    assert lap.critical_path == expected.critical_path
    assert not lap.truncated
    sectors, other = oracle_sectors(tree)
    assert lap.sectors == {n: float(v) for n, v in sectors.items()}
    assert lap.other_ms == float(other)


@settings(max_examples=200, deadline=None)
@given(attrs=st.fixed_dictionaries({}, optional={
    "chronograph.command": st.sampled_from(("", "faf score", ["a", "b"])),
    "http.route": st.sampled_from(("", "/x/{id}", 7)),
    "http.request.method": st.sampled_from(("", "GET", None)),
    "http.method": st.sampled_from(("", "POST"))}),
    lap_ms=st.integers(0, 500), green=st.integers(0, 400), extra=st.integers(0, 400))
def test_derive_names_and_rates_the_lap_as_the_public_helpers_do(attrs: dict[str, Any], lap_ms: int,
                                                                  green: int, extra: int) -> None:
    # Derivation inlines command_from_attributes (after an explicit command) and status_for.
    d = deriver({"status": {"green_ms": green, "yellow_ms": green + extra}})
    r = mk("GET span", ROOT_ID, None, 0, lap_ms, attributes=attrs)
    lap = d.derive(r)
    explicit = attrs.get("chronograph.command")
    expected = command_from_attributes("GET span", {k: v for k, v in attrs.items()
                                                    if k != "chronograph.command"})
    assert lap.command == (str(explicit[0]) if isinstance(explicit, list) else explicit or expected)
    assert lap.status == status_for(float(lap_ms), green, green + extra)
