"""A trace's spans as waterfall rows, and its critical path computed right for async fan-out.

The critical path is the chain of work the trace's end waited on. Walk back from the root's end: at
each step take the child that ends last at or before the cursor, walk into it the same way, then move
the cursor to that child's start; the time between the children taken is the parent's own work.
Children running concurrently with a child already taken (they end after the cursor) are not on the
path, which is what Jaeger gets wrong for async fan-out (jaeger-ui#2371). A child that overruns its
parent (fire-and-forget work, clock skew) is clipped to the parent's interval first; one that starts
after its parent ended is not on the path at all. The walk is iterative: a trace nested thousands of
levels deep does not hit Python's recursion limit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_ROWS", "WSpan", "critical_path", "waterfall"]

#: Rows drawn per trace; the critical path and the totals always cover every span.
MAX_ROWS = 300


@dataclass(frozen=True)
class WSpan:
    """The fields of a span a waterfall needs (times in ns since the epoch)."""

    span_id: str
    parent_id: str | None
    start_ns: int
    end_ns: int
    name: str = ""
    service: str = ""
    error: bool = False
    kind: str = "INTERNAL"

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> WSpan:
        """From a mapping with (at least) span_id, parent_id, start_ns and end_ns."""
        return cls(str(row["span_id"]), None if row.get("parent_id") is None else str(row["parent_id"]),
                   int(row["start_ns"]), max(int(row["end_ns"]), int(row["start_ns"])),
                   str(row.get("name", "")), str(row.get("service", "")), bool(row.get("error", False)),
                   str(row.get("kind", "INTERNAL")))


@dataclass
class _Frame:
    span_id: str
    start: int
    cursor: int
    children: list[tuple[int, int, str]]  # (clipped end, clipped start, span id), latest end first
    next: int = 0


def _tree(spans: Sequence[WSpan]) -> tuple[dict[str, WSpan], dict[str, list[WSpan]], list[WSpan]]:
    """Spans by id, children by parent id (start order), and the top-level spans (start order).

    A span whose parent is absent from the trace is top-level; so is one caught in a parent cycle
    (untrusted input), so every span is drawn exactly once.
    """
    by_id = {s.span_id: s for s in spans}
    children: dict[str, list[WSpan]] = {}
    roots: list[WSpan] = []
    for s in by_id.values():
        if s.parent_id is not None and s.parent_id in by_id and s.parent_id != s.span_id:
            children.setdefault(s.parent_id, []).append(s)
        else:
            roots.append(s)

    def order(s: WSpan) -> tuple[int, str, str]:
        return s.start_ns, s.name, s.span_id

    for kids in children.values():
        kids.sort(key=order)
    roots.sort(key=order)
    reached = _reachable(roots, children)
    if len(reached) < len(by_id):  # a cycle: break it at its earliest span
        for s in sorted(by_id.values(), key=order):
            if s.span_id not in reached:
                roots.append(s)
                reached |= _reachable([s], children, reached)
    return by_id, children, roots


def _reachable(roots: Sequence[WSpan], children: Mapping[str, list[WSpan]],
               seen: set[str] | None = None) -> set[str]:
    seen = set() if seen is None else set(seen)
    stack = [r.span_id for r in roots]
    while stack:
        sid = stack.pop()
        if sid in seen:
            continue
        seen.add(sid)
        stack.extend(c.span_id for c in children.get(sid, ()))
    return seen


def _main_root(roots: Sequence[WSpan]) -> WSpan:
    """The span the trace hangs from: a true root (no parent) first, then the earliest, then longest."""
    return min(roots, key=lambda s: (s.parent_id is not None, s.start_ns, -(s.end_ns - s.start_ns),
                                     s.span_id))


def _clipped_children(kids: Sequence[WSpan], start: int, end: int, on_path: set[str]
                      ) -> list[tuple[int, int, str]]:
    out = []
    for c in kids:
        cs, ce = max(c.start_ns, start), min(c.end_ns, end)
        if cs <= ce and c.span_id not in on_path:
            out.append((ce, cs, c.span_id))
    # latest end first; among equal ends the longer child (earlier start), then by id for determinism
    out.sort(key=lambda t: (-t[0], t[1], t[2]))
    return out


def critical_path(spans: Sequence[WSpan], root_id: str | None = None
                  ) -> tuple[list[str], list[tuple[str, int, int]]]:
    """The critical path from ``root_id`` (default: the trace's root): its span ids in start order,
    and its segments ``(span_id, start_ns, end_ns)`` (each span's own critical time), time order."""
    if not spans:
        return [], []
    by_id, children, roots = _tree(spans)
    root = by_id[root_id] if root_id is not None else _main_root(roots)
    on_path = {root.span_id}
    walk = [(root.start_ns, 0, root.span_id)]
    segments: list[tuple[str, int, int]] = []
    stack = [_Frame(root.span_id, root.start_ns, root.end_ns,
                    _clipped_children(children.get(root.span_id, ()), root.start_ns, root.end_ns, on_path))]
    while stack:
        frame = stack[-1]
        taken = None
        while frame.next < len(frame.children):
            end, start, sid = frame.children[frame.next]
            frame.next += 1
            if end <= frame.cursor:
                taken = (end, start, sid)
                break
        if taken is None:
            if frame.cursor > frame.start:
                segments.append((frame.span_id, frame.start, frame.cursor))
            stack.pop()
            continue
        end, start, sid = taken
        if end < frame.cursor:
            segments.append((frame.span_id, end, frame.cursor))
        frame.cursor = start
        on_path.add(sid)
        walk.append((start, len(walk), sid))
        stack.append(_Frame(sid, start, end, _clipped_children(children.get(sid, ()), start, end, on_path)))
    segments.sort(key=lambda seg: (seg[1], seg[2]))
    return [sid for _, _, sid in sorted(walk)], segments


def waterfall(rows: Sequence[Mapping[str, Any] | WSpan], max_rows: int = MAX_ROWS) -> dict[str, Any]:
    """Rows to draw (depth-first, children in start order, times in ms from the trace's start) with
    the critical path marked; at most ``max_rows`` rows, the totals cover every span."""
    spans = [r if isinstance(r, WSpan) else WSpan.of(r) for r in rows]
    if not spans:
        return {"spans": 0, "shown": 0, "duration_ms": 0.0, "root_span_id": None, "critical_path": [],
                "critical_segments": [], "rows": []}
    by_id, children, roots = _tree(spans)
    root = _main_root(roots)
    path, segments = critical_path(spans, root.span_id)
    on_path = set(path)
    t0 = min(s.start_ns for s in spans)
    t1 = max(s.end_ns for s in spans)

    def ms(ns: int) -> float:
        return (ns - t0) / 1e6

    out: list[dict[str, Any]] = []
    stack: list[tuple[WSpan, int]] = [(r, 0) for r in reversed(roots)]
    seen: set[str] = set()
    while stack and len(out) < max_rows:
        s, depth = stack.pop()
        if s.span_id in seen:
            continue
        seen.add(s.span_id)
        parent = by_id.get(s.parent_id) if s.parent_id is not None else None
        overruns = parent is not None and (s.end_ns > parent.end_ns or s.start_ns < parent.start_ns)
        out.append({"span_id": s.span_id, "parent_id": s.parent_id, "depth": depth, "service": s.service,
                    "name": s.name, "kind": s.kind, "start_ms": ms(s.start_ns),
                    "duration_ms": (s.end_ns - s.start_ns) / 1e6, "error": s.error,
                    "critical": s.span_id in on_path, "overruns_parent": overruns})
        stack.extend((c, depth + 1) for c in reversed(children.get(s.span_id, ())))
    critical_ms = sum(e - s for _, s, e in segments) / 1e6
    return {"spans": len(spans), "shown": len(out), "duration_ms": (t1 - t0) / 1e6,
            "root_span_id": root.span_id, "root_duration_ms": (root.end_ns - root.start_ns) / 1e6,
            "critical_path": path, "critical_ms": critical_ms,
            "critical_segments": [{"span_id": sid, "start_ms": ms(s), "end_ms": ms(e)}
                                  for sid, s, e in segments],
            "rows": out}
