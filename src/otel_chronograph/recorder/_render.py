"""Renderings of flight records: the seed's text timeline, JSON, Chrome trace events and folded stacks."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from .._lap import Lap, SectorSpan
from .._text import safe
from .._vocab import format_ms
from ..engine._derive import union_ns
from ._record import FlightRecord, share_percent

__all__ = ["folded_stacks", "format_ms", "format_share", "record_document", "render_text", "summary_item",
           "to_chrome_trace", "to_json"]


def format_share(pct: float) -> str:
    """``51%`` for a share from 1% up, ``0.4%`` below (as in the seed's SUMMARY)."""
    if round(pct, 1) >= 1 or pct == 0:
        return f"{pct:.0f}%"
    return f"{pct:.1f}%"


@lru_cache(maxsize=1024)
def _label(key: str) -> str:
    unit = ""
    if key.endswith("_ms"):
        key, unit = key[:-3], " (ms)"
    return key[:1].upper() + key[1:].replace("_", " ") + unit


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return json.dumps(value, default=str)
    return str(value)


def _clock(iso: str) -> str:
    # "2026-02-20T14:32:01.000Z" -> "14:32:01.000"
    return iso[11:23]


def render_text(record: FlightRecord, comparison: Mapping[str, Any] | None = None) -> str:
    """The seed's layout: ``REQUEST TIMELINE: <id>``, a ``[HH:MM:SS.mmm] ➜ Stage`` block per milestone
    with its details (UTC clock), then ``SUMMARY:`` with total, each sector and Other.

    Names and details come from spans: each line is escaped (:func:`~.._text.safe`), so a control
    sequence is shown, not interpreted, and a newline in a name cannot start a line of its own."""
    lines = [f"REQUEST TIMELINE: {record.id}", ""]
    for ev in record.events:
        lines.append(f"[{_clock(ev['timestamp'])}] ➜ {ev['stage']}")
        for key, value in ev["details"].items():
            if key == "stacktrace":
                continue
            lines.append(f"  {_label(str(key))}: {_value(value)}")
        lines.append("")
    s = record.summary
    total = float(s["total_ms"])
    lines.append("SUMMARY:")
    lines.append(f"  Total: {format_ms(total)}")
    for part in s["breakdown"]:
        lines.append(f"  {_label(part['name'])}: {format_ms(part['ms'])} "
                     f"({format_share(share_percent(part['ms'], total))})")
    other = s["other"]
    lines.append(f"  Other: {format_ms(other['ms'])} ({format_share(share_percent(other['ms'], total))})")
    err = ""
    if record.error:
        err = f" (error: {record.error_message})" if record.error_message else " (error)"
    lines.append(f"  Status: {record.status}{err}")
    if comparison and comparison.get("count") and comparison.get("median_ms"):
        ratio = float(comparison.get("ratio", 0.0))
        lines.append(f"  History: median {format_ms(float(comparison['median_ms']))}, "
                     f"p95 {format_ms(float(comparison.get('p95_ms', 0.0)))} over {comparison['count']} "
                     f"'{record.command}' laps ({ratio:.1f}× median)")
        if comparison.get("anomaly"):
            lines.append(f"  ANOMALY: {ratio:.1f}× the median "
                         f"(threshold {float(comparison.get('factor', 0.0)):g}×)")
    return "".join(safe(line) + "\n" for line in lines)


def to_json(record: FlightRecord, comparison: Mapping[str, Any] | None = None,
            text: bool = False) -> dict[str, Any]:
    """The record as a dict; with ``comparison`` adds ``history``/``anomaly``; with ``text`` the rendering."""
    out = record.to_json()
    if comparison is not None:
        out["history"] = dict(comparison)
        out["anomaly"] = bool(comparison.get("anomaly"))
    if text:
        out["text"] = render_text(record, comparison)
    return out


def summary_item(record: FlightRecord) -> dict[str, Any]:
    """A record in lists (``GET /api/v1/flight-recorder``): no timeline."""
    return {
        "id": record.id,
        "trace_id": record.trace_id,
        "command": record.command,
        "conversation_id": record.conversation_id,
        "timestamp": record.iso_timestamp,
        "timestamp_ms": record.timestamp,
        "lap_ms": record.lap_ms,
        "status": record.status,
        "error": record.error,
        "cost": format(record.cost, "f"),
        "sectors": record.sectors,
    }


def record_document(record: FlightRecord, comparison: Mapping[str, Any]) -> dict[str, Any]:
    """The body of ``GET /api/v1/flight-recorder/{id}``: the record, ``anomaly``, ``history``, ``text``."""
    return to_json(record, comparison, text=True)


# -- flamegraph-friendly exports ----------------------------------------------------------------


def _laps(items: Iterable[FlightRecord | Lap] | FlightRecord | Lap) -> list[Lap]:
    if isinstance(items, (FlightRecord, Lap)):
        items = [items]
    out: list[Lap] = []
    for it in items:
        lap = it.lap if isinstance(it, FlightRecord) else it
        if lap is None:
            raise ValueError(f"record {getattr(it, 'id', '?')} has no lap to export")
        out.append(lap)
    return out


def _fits(track: list[tuple[int, int]], iv: tuple[int, int]) -> bool:
    """Whether ``iv`` nests on a track (every slice on it disjoint from ``iv`` or containing it).

    Slices come in start order, so a track's slices that still overlap the current start form a
    nested chain: a stack. Slices ending before ``iv`` starts are popped for good (every later slice
    starts later too), so each slice is pushed and popped once: linear, where comparing with every slice
    on the track was quadratic (a 20,000-deep lap took 62 s)."""
    while track and track[-1][1] <= iv[0]:
        track.pop()
    return not track or (track[-1][0] <= iv[0] and iv[1] <= track[-1][1])


def to_chrome_trace(items: Iterable[FlightRecord | Lap] | FlightRecord | Lap) -> dict[str, Any]:
    """Chrome trace event format (JSON object form) for one or many laps: open it in Perfetto or
    chrome://tracing. One process per lap; the lap and its spans are complete (``X``) events on
    tracks (threads) chosen so that slices on one track nest; span events are instant (``i``) events."""
    events: list[dict[str, Any]] = []
    for pid, lap in enumerate(_laps(items), start=1):
        events.append({"name": "process_name", "ph": "M", "pid": pid, "tid": 1, "ts": 0,
                       "args": {"name": f"{lap.command} {lap.request_id}"}})
        events.append({"name": "process_sort_index", "ph": "M", "pid": pid, "tid": 1, "ts": 0,
                       "args": {"sort_index": pid}})
        lanes: list[list[tuple[int, int]]] = [[(lap.start_ns, lap.end_ns)]]
        lane_of = {lap.span_id: 0}
        events.append({
            "name": lap.command, "cat": "lap", "ph": "X", "pid": pid, "tid": 1,
            "ts": lap.start_ns / 1000, "dur": max(lap.end_ns - lap.start_ns, 0) / 1000,
            "args": {"request_id": lap.request_id, "trace_id": lap.trace_id, "status": lap.status,
                     "lap_ms": lap.lap_ms, "error": lap.error},
        })
        for span in sorted(lap.spans, key=lambda s: (s.start_ns, -s.end_ns)):
            iv = (span.start_ns, max(span.end_ns, span.start_ns))
            lane = lane_of.get(span.parent_id or "", 0)
            while lane < len(lanes) and not _fits(lanes[lane], iv):
                lane += 1
            if lane == len(lanes):
                lanes.append([])
            lanes[lane].append(iv)
            lane_of[span.span_id] = lane
            events.append({
                "name": span.name, "cat": span.sector or "span", "ph": "X", "pid": pid, "tid": lane + 1,
                "ts": iv[0] / 1000, "dur": (iv[1] - iv[0]) / 1000,
                "args": {"span_id": span.span_id, "sector": span.sector, "error": span.error},
            })
        for ev in lap.events:
            args = {k: v if isinstance(v, (str, int, float, bool)) else str(v)
                    for k, v in ev.attributes.items()}
            events.append({"name": ev.name, "cat": "event", "ph": "i", "s": "t", "pid": pid, "tid": 1,
                           "ts": ev.timestamp_ns / 1000, "args": args})
        for t in range(2, len(lanes) + 1):
            events.append({"name": "thread_name", "ph": "M", "pid": pid, "tid": t, "ts": 0,
                           "args": {"name": f"parallel {t - 1}"}})
    return {"traceEvents": events, "displayTimeUnit": "ms"}


def _frame(name: str) -> str:
    """A frame name on one line without the separator (``;``), control characters escaped."""
    return safe(name).replace(";", ":") or "?"


MAX_STACK_FRAMES = 256  # deeper frames fold into one "…" frame: lines stay bounded, flame graphs readable


def _stack_keys(spans: Iterable[SectorSpan], by_id: Mapping[str, SectorSpan], root_key: str
                ) -> dict[str, str]:
    """Each span's ``root;...;span`` key, from its parent's (memoised, iterative): linear in the number
    of spans where walking to the root per span was quadratic in depth (116 s for a 20,000-deep lap)."""
    keys: dict[str, str] = {}
    depth: dict[str, int] = {}
    for span in spans:
        chain: list[SectorSpan] = []
        on_chain: set[str] = set()
        cur: SectorSpan | None = span
        while cur is not None and cur.span_id not in keys:
            chain.append(cur)
            on_chain.add(cur.span_id)
            parent = by_id.get(cur.parent_id or "")
            cur = parent if parent is not None and parent.span_id not in on_chain else None
        base_key = keys[cur.span_id] if cur is not None else root_key
        base_depth = depth[cur.span_id] if cur is not None else 1
        for node in reversed(chain):
            base_depth += 1
            if base_depth < MAX_STACK_FRAMES:
                base_key = f"{base_key};{_frame(node.name)}"
            elif base_depth == MAX_STACK_FRAMES:
                base_key = f"{base_key};…"
            keys[node.span_id] = base_key
            depth[node.span_id] = base_depth
    return keys


def folded_stacks(items: Iterable[FlightRecord | Lap] | FlightRecord | Lap) -> str:
    """Brendan Gregg's folded stacks (``command;sector span;child self_µs`` per line, summed over laps),
    for flamegraph.pl, speedscope or inferno. Weights are self time in microseconds."""
    weights: dict[str, int] = {}
    for lap in _laps(items):
        by_id = {s.span_id: s for s in lap.spans}
        children: dict[str, list[tuple[int, int]]] = {}
        for s in lap.spans:
            parent = s.parent_id if s.parent_id in by_id else lap.span_id
            children.setdefault(parent, []).append((s.start_ns, s.end_ns))

        root_key = _frame(lap.command)
        keys = _stack_keys(lap.spans, by_id, root_key)
        root_self = (lap.end_ns - lap.start_ns) - union_ns(children.get(lap.span_id, []))
        weights[root_key] = weights.get(root_key, 0) + max(root_self, 0)
        for s in lap.spans:
            own = (s.end_ns - s.start_ns) - union_ns(children.get(s.span_id, []))
            key = keys[s.span_id]
            weights[key] = weights.get(key, 0) + max(own, 0)
    return "".join(f"{k} {v // 1000}\n" for k, v in weights.items() if v // 1000 > 0)
