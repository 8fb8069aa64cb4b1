"""Derivation: from a finished lap's spans to a :class:`Lap` (SPEC.md, "Derivation").

Pure functions over integer nanoseconds so the arithmetic is exact; milliseconds only at the edge.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from ._config import ChronographConfig
from ._lap import Lap, LapEvent, Lazy, SectorSpan, Status
from ._rules import SpanRecord, attributes_of, compile_sector_rules

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
    if len(intervals) < 2:
        return intervals[0][1] - intervals[0][0] if intervals else 0
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
    sections: list[tuple[int, int, int]] = []
    if len(children) <= 1 and all(k == root_id for k in children):
        return _flat_critical_path(root_id, window, children.get(root_id, ()), sections)
    by_end: dict[int, list[int]] = {}
    ptr: dict[int, int] = {}
    parent_of: dict[int, int] = {}
    span = root_id
    cursor = window[root_id][1]
    while True:
        start = window[span][0]
        kids = by_end.get(span)
        if kids is None:
            kids = children.get(span) or []
            if len(kids) > 1:
                kids = sorted(kids, key=lambda k: window[k][1], reverse=True)
            by_end[span] = kids
            ptr[span] = 0
            for k in kids:
                parent_of[k] = span
        # The cursor only moves back in time, so one pointer per span walks its children once.
        i, n = ptr[span], len(kids)
        while i < n and window[kids[i]][1] > cursor:
            i += 1
        if i < n:
            lfc = kids[i]
            ptr[span] = i + 1
            lfc_end = window[lfc][1]
            if cursor > lfc_end:
                sections.append((span, lfc_end, cursor))
            span, cursor = lfc, lfc_end
            continue
        ptr[span] = i
        if cursor > start:
            sections.append((span, start, cursor))
        if span == root_id:
            return sections
        # Back to the parent, which continues before this child's start.
        cursor = start
        span = parent_of[span]


def _flat_critical_path(root_id: int, window: Mapping[int, tuple[int, int]], kids: Sequence[int],
                        sections: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    """The common lap: every span a direct child of the root, so each child on the path is a leaf."""
    r_start, cursor = window[root_id]
    for k in sorted(kids, key=lambda k: window[k][1], reverse=True):
        k_start, k_end = window[k]
        if k_end > cursor:
            continue  # overlaps the child already on the path: not before the cursor
        if cursor > k_end:
            sections.append((root_id, k_end, cursor))
        sections.append((k, k_start, k_end))
        cursor = k_start
    if cursor > r_start:
        sections.append((root_id, r_start, cursor))
    return sections


def status_for(lap_ms: float, green_ms: float, yellow_ms: float) -> Status:
    if lap_ms < green_ms:
        return "GREEN"
    if lap_ms < yellow_ms:
        return "YELLOW"
    return "RED"


def _hex_span(span_id: int) -> str:
    return format(span_id, "016x")


def _exception_message(root: ReadableSpan, spans: Iterable[SpanRecord]) -> str | None:
    """The first recorded exception's message, for an error lap whose status has no description."""
    sources: list[Sequence[Any]] = [root.events, *(s.events for s in spans)]
    for events in sources:
        for e in events:
            if e.name == "exception" and e.attributes and "exception.message" in e.attributes:
                message = str(e.attributes["exception.message"])
                kind = e.attributes.get("exception.type")
                return f"{kind}: {message}" if kind is not None else message
    return None


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

    def sector_of(self, span: ReadableSpan | SpanRecord) -> str | None:
        attrs = attributes_of(span)
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
        spans: Sequence[ReadableSpan | SpanRecord],
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

        # One pass over the spans: parent, raw interval, own sector. Orphans hang off the root.
        span_of: dict[int, SpanRecord] = {}
        parent_of: dict[int, int] = {}
        raw: dict[int, tuple[int, int]] = {}
        own: dict[int, str | None] = {}
        sector_of = self.sector_of
        record = SpanRecord.of
        for span in spans:
            if getattr(span, "context", True) is None:
                continue
            s = record(span)
            sid = s.span_id
            if sid == root_id or sid in span_of:
                continue
            span_of[sid] = s
            p = s.parent_id
            parent_of[sid] = p if p is not None else root_id
            st = s.start_time or r_start
            en = s.end_time or st
            raw[sid] = (st, en if en > st else st)
            own[sid] = sector_of(s)
        for sid, pid in parent_of.items():
            if pid != root_id and (pid not in span_of or pid == sid):
                parent_of[sid] = root_id

        # Top-down: a span's sector is its own or its nearest sector ancestor's; its window (for the
        # critical path) is clipped to its parent's window, as Jaeger does.
        sector: dict[int, str | None] = {root_id: None}
        window: dict[int, tuple[int, int]] = {root_id: (r_start, r_end)}
        for sid in span_of:
            if sid in window:
                continue
            chain = [sid]
            cur = parent_of[sid]
            while cur not in window:
                chain.append(cur)
                cur = parent_of[cur]
                if len(chain) > len(span_of):  # a parent cycle: can't happen with real span ids
                    cur = root_id
                    break
            for node in reversed(chain):
                pid = parent_of[node]
                if pid not in window:
                    pid = root_id
                o = own[node]
                sector[node] = o if o is not None else sector[pid]
                p_start, p_end = window[pid]
                st, en = raw[node]
                a = st if st > p_start else p_start
                b = en if en < p_end else p_end
                window[node] = (a, b if b > a else a)

        # Sector unions, clipped to the lap window; sectors ordered by first start.
        per_sector: dict[str, list[tuple[int, int]]] = {}
        first_start: dict[str, int] = {}
        covered: list[tuple[int, int]] = []
        children: dict[int, list[int]] = {}
        for sid, (st, en) in raw.items():
            w = window[sid]
            if w[1] > w[0]:
                children.setdefault(parent_of[sid] if parent_of[sid] in window else root_id, []).append(sid)
            name = sector[sid]
            if name is None:
                continue
            if name not in first_start or st < first_start[name]:
                first_start[name] = st
            a = st if st > r_start else r_start
            b = en if en < r_end else r_end
            if b > a:
                per_sector.setdefault(name, []).append((a, b))
                covered.append((a, b))
        names = sorted(first_start, key=lambda n: (first_start[n], n))
        sectors_ns = {n: union_ns(per_sector[n]) if n in per_sector else 0 for n in names}
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

        attrs = attributes_of(root)
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
            status = self._status.on_error

        timeline: list[tuple[list[LapEvent], list[SectorSpan]]] = []

        def build() -> tuple[list[LapEvent], list[SectorSpan]]:
            if not timeline:
                timeline.append(self._timeline(root, span_of, parent_of, sector, raw, r_start, r_end))
            return timeline[0]

        events: Lazy[LapEvent] = Lazy(lambda: build()[0])
        span_rows: Lazy[SectorSpan] = Lazy(lambda: build()[1])
        if error and not error_message:
            error_message = _exception_message(root, span_of.values())
        resource = root.resource.attributes if root.resource is not None else {}  # a plain dict
        session = attrs.get("session.id")
        hex_id = _hex_span(root_id)
        return Lap(
            request_id="req_" + hex_id,
            trace_id=format(rctx.trace_id, "032x"),
            span_id=hex_id,
            command=cmd,
            timestamp=r_start // _NS_PER_MS,
            start_ns=r_start,
            end_ns=r_end,
            lap_ms=lap_ms,
            other_ms=other_ns / _NS_PER_MS,
            sectors={n: v / _NS_PER_MS for n, v in sectors_ns.items()},
            critical_path={n: cp_ns[n] / _NS_PER_MS for n in names if n in cp_ns},
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
            span_count=len(span_of) + 1,
            truncated=truncated,
        )

    def _timeline(
        self,
        root: ReadableSpan,
        span_of: Mapping[int, SpanRecord],
        parent_of: Mapping[int, int],
        sector: Mapping[int, str | None],
        raw: Mapping[int, tuple[int, int]],
        r_start: int,
        r_end: int,
    ) -> tuple[list[LapEvent], list[SectorSpan]]:
        """Span rows (clipped to the lap) and span events in time order, for timelines and flamegraphs."""
        rows = []
        events: list[LapEvent] = []
        limit = self._max_events
        root_events = root.events
        if root_events:
            self._events(root_events, None, root.name, r_start, events, limit)
        for sid, s in span_of.items():
            st, en = raw[sid]
            a = st if st > r_start else r_start
            b = en if en < r_end else r_end
            rows.append(SectorSpan(sector[sid], s.name, _hex_span(sid), _hex_span(parent_of[sid]),
                                   a, b if b > a else a, s.error))
            ev = s.events
            if ev:
                self._events(ev, sector[sid], s.name, r_start, events, limit)
        if len(events) > 1:
            events.sort(key=lambda e: e.timestamp_ns)
        return events, rows

    @staticmethod
    def _events(source: Sequence[Any], sector: str | None, span_name: str, r_start: int,
                out: list[LapEvent], limit: int) -> None:
        for e in source:
            if len(out) >= limit:
                return
            out.append(LapEvent(e.name, e.timestamp, (e.timestamp - r_start) / _NS_PER_MS, sector,
                                span_name, dict(e.attributes or {})))


def lap_attributes(lap: Lap) -> dict[str, Any]:
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

