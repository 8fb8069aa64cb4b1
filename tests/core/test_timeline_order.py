"""The lap's timeline order (``lap.spans``, ``lap.events``) against an independent oracle, for flat and
nested laps, whatever order the spans arrive in: rows by start (clipped to the lap) then id as text
(ids longer than 16 hex digits included); events by time, ties in span start order (then id), the
root's first, each span's events in its own order. Both timeline builders share the ordering code, so
comparing them with each other (test_properties) cannot catch a wrong order: this does."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from .helpers import ROOT_ID, deriver, event, mk, root


@dataclass(frozen=True)
class Node:
    sid: int
    parent: int
    start: int
    end: int
    events: tuple[int, ...]  # event times, ms


@st.composite
def laps(draw: st.DrawFn) -> tuple[int, list[Node], int | None]:
    lap = draw(st.integers(1, 30))
    wide = draw(st.booleans())
    ids = draw(st.lists(st.integers(1, 2**66) if wide else st.integers(1, 40), max_size=8, unique=True)
               .filter(lambda xs: ROOT_ID not in xs))
    nested = draw(st.booleans())
    nodes: list[Node] = []
    for sid in ids:
        parent = draw(st.sampled_from([ROOT_ID, *(x.sid for x in nodes)])) if nested else ROOT_ID
        start = draw(st.integers(-5, lap + 5))
        end = start + draw(st.integers(0, 20))
        times = tuple(draw(st.lists(st.sampled_from((0, 2, 5)), max_size=2)))  # ties on purpose
        nodes.append(Node(sid, parent, start, end, times))
    root_event = draw(st.sampled_from((None, 0, 2, 5)))
    return lap, nodes, root_event


def derive(lap: int, nodes: list[Node], root_event: int | None) -> Any:
    r = root(0, lap, events=(event("root", root_event),) if root_event is not None else ())
    spans = [mk(f"n{x.sid}", x.sid, x.parent, x.start, x.end,
                events=tuple(event(f"e{x.sid}.{k}", t) for k, t in enumerate(x.events))) for x in nodes]
    return deriver().derive(r, spans)


@settings(max_examples=300, deadline=None)
@given(lap=laps(), order=st.randoms(use_true_random=False))
def test_rows_and_events_come_in_the_oracles_order_whatever_the_arrival_order(
        lap: tuple[int, list[Node], int | None], order: Any) -> None:
    length, nodes, root_event = lap
    derived = derive(length, nodes, root_event)
    rows = sorted(nodes, key=lambda x: (max(x.start, 0), f"{x.sid:016x}"))
    assert [s.span_id for s in derived.spans] == [f"{x.sid:016x}" for x in rows]
    visits = [("root", [root_event] if root_event is not None else [])]
    visits += [(f"n{x.sid}", list(x.events)) for x in sorted(nodes, key=lambda x: (x.start, x.sid))]
    expected = [(f"e{name[1:]}.{k}" if name != "root" else "root", t)
                for name, times in visits for k, t in enumerate(times)]
    expected.sort(key=lambda e: e[1])  # stable: ties keep the visiting order
    assert [e.name for e in derived.events] == [name for name, _ in expected]
    shuffled = list(nodes)
    order.shuffle(shuffled)
    again = derive(length, shuffled, root_event)
    assert list(again.spans) == list(derived.spans) and list(again.events) == list(derived.events)
