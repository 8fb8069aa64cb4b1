"""Derivation: from a finished lap's spans to a :class:`Lap` (SPEC.md, "Derivation").

Pure functions over integer nanoseconds so the arithmetic is exact; milliseconds only at the edge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

from ._config import ChronographConfig
from ._lap import Lap, LapEvent, SectorSpan, Status
from ._rules import compile_sector_rules

__all__ = [
    "Deriver",
    "critical_path",
    "status_for",
    "union_ns",
]

SECTOR_ATTR = "chronograph.sector"
_NS_PER_MS = 1_000_000


def union_ns(intervals: list[tuple[int, int]]) -> int:
    """Total length covered by possibly overlapping [start, end) intervals."""
    if not intervals:
        return 0
    intervals.sort()
    total = 0
    cur_s, cur_e = intervals[0]
    for s, e in intervals[1:]:
        if s > cur_e:
            total += cur_e - cur_s
            cur_s, cur_e = s, e
        elif e > cur_e:
            cur_e = e
    return total + cur_e - cur_s


def critical_path(
    root_id: int,
    window: Mapping[int, tuple[int, int]],
    children: Mapping[int, list[int]],
) -> list[tuple[int, int, int]]:
    """Jaeger's critical path: (span id, start, end) sections that partition the root's window.

    ``window`` holds each span's interval already clipped to its parent; ``children`` lists child ids.
    Iterative (deep traces must not hit the recursion limit): walk the last-finishing child, and when a
    span has no child finishing before the cursor, its own time up to the cursor is on the path.
    """
    by_end = {sid: sorted(kids, key=lambda k: window[k][1], reverse=True) for sid, kids in children.items()}
    parent_of = {k: sid for sid, kids in children.items() for k in kids}
    sections: list[tuple[int, int, int]] = []
    span = root_id
    cursor = window[root_id][1]
    while True:
        start = window[span][0]
        lfc = next((k for k in by_end.get(span, ()) if window[k][1] <= cursor and window[k][1] > start), None)
        if lfc is not None:
            lfc_end = window[lfc][1]
            if cursor > lfc_end:
                sections.append((span, lfc_end, cursor))
            span, cursor = lfc, lfc_end
            continue
        if cursor > start:
            sections.append((span, start, cursor))
        if span == root_id:
            return sections
        # Back to the parent, which continues before this child's start.
        cursor = start
        span = parent_of[span]
        # Children of the parent that end after this child's start are not before the cursor: the
        # strict ``<=`` above with the cursor at this start keeps them out.


def status_for(lap_ms: float, green_ms: float, yellow_ms: float) -> Status:
    if lap_ms < green_ms:
        return "GREEN"
    if lap_ms < yellow_ms:
        return "YELLOW"
    return "RED"


def _hex_span(span_id: int) -> str:
    return format(span_id, "016x")


def command_from_attributes(name: str, attributes: Mapping[str, Any] | None) -> str:
    """The lap's command: explicit attribute, else ``METHOD route`` for HTTP servers, else the span name."""
    if attributes:
        cmd = attributes.get("chronograph.command")
        if cmd:
            return str(cmd)
        route = attributes.get("http.route")
        if route:
            method = attributes.get("http.request.method") or attributes.get("http.method")
            return f"{method} {route}" if method else str(route)
    return name


@dataclass(frozen=True, slots=True)
class _Span:
    sid: int
    parent: int | None
    start: int
    end: int


class Deriver:
    """Holds what the config fixes (rules, thresholds, rate card) so each derivation is just arithmetic."""

    def __init__(self, config: ChronographConfig) -> None:
        self._sector_for = compile_sector_rules(config.sectors.rules)
        self._has_sector_rules = bool(config.sectors.rules)
        self._status = config.status
        billing = config.billing
        self._tiers = dict(billing.tiers)
        self._rates = dict(billing.rates)
        self._default_rate = billing.default_rate
        self._default_tier = billing.default_tier
        self._unknown_tier = billing.unknown_tier_multiplier
        self._max_events = config.recorder.max_events_per_lap

    def cost(self, command: str, tier: str) -> Decimal:
        rate = self._rates.get(command, self._default_rate)
        multiplier = self._tiers.get(tier, self._unknown_tier)
        return rate * multiplier

    def sector_of(self, span: ReadableSpan) -> str | None:
        attrs = span.attributes
        if attrs:
            explicit = attrs.get(SECTOR_ATTR)
            if explicit is not None:
                return str(explicit)
        if self._has_sector_rules:
            return self._sector_for(span.name, span.kind, attrs)
        return None

    def derive(
        self,
        root: ReadableSpan,
        spans: Sequence[ReadableSpan],
        command: str | None = None,
        truncated: bool = False,
    ) -> Lap:
        """Derive a lap from its root and the descendants that ended in time (any order)."""
        rctx = root.context
        assert rctx is not None and root.start_time is not None and root.end_time is not None
        root_id = rctx.span_id
        r_start, r_end = root.start_time, root.end_time
        if r_end < r_start:
            r_end = r_start
        lap_ns = r_end - r_start

        by_id: dict[int, ReadableSpan] = {}
        for s in spans:
            c = s.context
            if c is not None and c.span_id != root_id:
                by_id[c.span_id] = s

        # Children and clipped windows, parents before children (orphans hang off the root).
        children: dict[int, list[int]] = {}
        for sid, s in by_id.items():
            p = s.parent.span_id if s.parent is not None else None
            if p is None or (p != root_id and p not in by_id):
                p = root_id
            children.setdefault(p, []).append(sid)

        window: dict[int, tuple[int, int]] = {root_id: (r_start, r_end)}
        sector: dict[int, str | None] = {root_id: None}
        order: list[int] = []
        stack = [root_id]
        while stack:
            pid = stack.pop()
            p_start, p_end = window[pid]
            p_sector = sector[pid]
            kids = children.get(pid)
            if not kids:
                continue
            kept = []
            for sid in kids:
                s = by_id[sid]
                s_start = s.start_time or p_start
                s_end = s.end_time or s_start
                c_start = s_start if s_start > p_start else p_start
                c_end = s_end if s_end < p_end else p_end
                own = self.sector_of(s)
                sector[sid] = own if own is not None else p_sector
                if c_end < c_start:
                    c_end = c_start
                window[sid] = (c_start, c_end)
                order.append(sid)
                stack.append(sid)
                if c_end > c_start:
                    kept.append(sid)
            children[pid] = kept

        # Sector unions (clipped to the lap window), ordered by first start.
        per_sector: dict[str, list[tuple[int, int]]] = {}
        first_start: dict[str, int] = {}
        covered: list[tuple[int, int]] = []
        for sid in order:
            name = sector[sid]
            if name is None:
                continue
            s = by_id[sid]
            raw_start = s.start_time or r_start
            c_start, c_end = window[sid]
            if name not in first_start or raw_start < first_start[name]:
                first_start[name] = raw_start
            if c_end > c_start:
                iv = (c_start, c_end)
                per_sector.setdefault(name, []).append(iv)
                covered.append(iv)
        names = sorted(first_start, key=lambda n: (first_start[n], n))
        sectors_ns = {n: union_ns(per_sector.get(n, [])) for n in names}
        other_ns = lap_ns - union_ns(covered)

        # Critical path shares by sector.
        cp_ns: dict[str, int] = {}
        cp_other = 0
        for sid, a, b in critical_path(root_id, window, children):
            name = sector[sid]
            if name is None:
                cp_other += b - a
            else:
                cp_ns[name] = cp_ns.get(name, 0) + (b - a)

        attrs = root.attributes or {}
        cmd = command_from_attributes(root.name, attrs) if command is None or "chronograph.command" in attrs \
            else command
        tier_attr = attrs.get("chronograph.tier")
        tier = str(tier_attr) if tier_attr is not None else self._default_tier
        customer = attrs.get("chronograph.customer")
        score = attrs.get("chronograph.score")
        lap_ms = lap_ns / _NS_PER_MS
        green, yellow = self._status.thresholds(cmd)
        status = status_for(lap_ms, green, yellow)
        error = root.status.status_code is StatusCode.ERROR
        error_message = root.status.description if error else None
        if error and self._status.on_error != "time":
            status = self._status.on_error  # type: ignore[assignment]

        events, span_rows = self._timeline(root, by_id, order, sector, window, r_start)
        if error and not error_message:
            error_message = next(
                (str(e.attributes.get("exception.message")) for e in events
                 if e.name == "exception" and "exception.message" in e.attributes), None)
        resource = root.resource.attributes if root.resource is not None else {}
        session = attrs.get("session.id")
        return Lap(
            request_id="req_" + _hex_span(root_id),
            trace_id=format(rctx.trace_id, "032x"),
            span_id=_hex_span(root_id),
            command=cmd,
            timestamp=r_start // _NS_PER_MS,
            start_ns=r_start,
            end_ns=r_end,
            lap_ms=lap_ms,
            other_ms=other_ns / _NS_PER_MS,
            sectors={n: v / _NS_PER_MS for n, v in sectors_ns.items()},
            critical_path={n: cp_ns.get(n, 0) / _NS_PER_MS for n in names if n in cp_ns},
            critical_other_ms=cp_other / _NS_PER_MS,
            status=status,
            error=error,
            tier=tier,
            customer=str(customer) if customer is not None else None,
            score=float(score) if isinstance(score, (int, float)) and not isinstance(score, bool) else None,
            cost=self.cost(cmd, tier),
            events=events,
            spans=span_rows,
            error_message=error_message,
            session_id=str(session) if session is not None else None,
            service_name=str(resource.get("service.name")) if resource.get("service.name") else None,
            span_count=len(by_id) + 1,
            truncated=truncated,
        )

    def _timeline(
        self,
        root: ReadableSpan,
        by_id: Mapping[int, ReadableSpan],
        order: Sequence[int],
        sector: Mapping[int, str | None],
        window: Mapping[int, tuple[int, int]],
        r_start: int,
    ) -> tuple[list[LapEvent], list[SectorSpan]]:
        rows = []
        events: list[LapEvent] = []
        limit = self._max_events
        for sid, s in [(root.context.span_id, root), *((i, by_id[i]) for i in order)]:  # type: ignore[union-attr]
            if sid != root.context.span_id:  # type: ignore[union-attr]
                a, b = window[sid]
                rows.append(SectorSpan(
                    sector=sector[sid], name=s.name, span_id=_hex_span(sid),
                    parent_id=_hex_span(s.parent.span_id) if s.parent is not None else None,
                    start_ns=a, end_ns=b, error=s.status.status_code is StatusCode.ERROR,
                ))
            for e in s.events:
                if len(events) >= limit:
                    break
                events.append(LapEvent(
                    name=e.name, timestamp_ns=e.timestamp,
                    elapsed_ms=(e.timestamp - r_start) / _NS_PER_MS,
                    sector=sector[sid], span_name=s.name,
                    attributes=dict(e.attributes or {}),
                ))
        events.sort(key=lambda ev: ev.timestamp_ns)
        return events, rows


def annotations(lap: Lap) -> dict[str, Any]:
    """The ``chronograph.*`` attributes the exported lap span carries."""
    out: dict[str, Any] = {
        "chronograph.lap": True,
        "chronograph.command": lap.command,
        "chronograph.lap_ms": lap.lap_ms,
        "chronograph.other_ms": lap.other_ms,
        "chronograph.status": lap.status,
        "chronograph.cost": format(lap.cost, "f"),
        "chronograph.request_id": lap.request_id,
        "chronograph.tier": lap.tier,
    }
    for name, ms in lap.sectors.items():
        out[f"chronograph.sector.{name}.ms"] = ms
    if lap.error:
        out["chronograph.error"] = True
    return out


KindOf = Callable[[ReadableSpan], SpanKind]
