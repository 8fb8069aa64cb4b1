"""Derivation: from a finished lap's span records to a :class:`Lap` (SPEC.md, "Derivation").

In steps, each a small function over integer nanoseconds so the arithmetic is exact (milliseconds only
at the edge): index the spans, inherit sectors and clip windows, sector splits, critical-path shares,
identity, status and cost. Works on :class:`SpanRecord` only, so every source derives alike.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import fields
from decimal import Decimal
from operator import attrgetter
from typing import Any

from .._config import ChronographConfig
from .._lap import Lap, LapEvent, Lazy, SectorSpan, Status
from .._vocab import NS_PER_MS
from ._records import EMPTY, SpanRecord
from ._rules import compile_identity, compile_sector_rules, first_value

__all__ = [
    "Deriver",
    "command_from_attributes",
    "critical_path",
    "lap_attributes",
    "status_for",
    "union_ns",
]

SECTOR_ATTR = "chronograph.sector"
# Event details reach every sink (the flight recorder keeps them in memory and on disk): bounded.
MAX_EVENT_ATTRIBUTES = 64
MAX_VALUE_CHARS = 4096
MAX_SEQUENCE = 128
_NS_PER_MS = NS_PER_MS  # local name: read in the per-lap arithmetic


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
                kids = sorted(kids, key=lambda k: (window[k][1], k), reverse=True)  # ties: by id, not arrival
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
    for k in sorted(kids, key=lambda k: (window[k][1], k), reverse=True):
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


def _exception_message(root: SpanRecord, spans: Iterable[SpanRecord]) -> str | None:
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


class _Tree:
    """Step 1-2 results: the lap's spans indexed by id, their sectors and windows."""

    __slots__ = ("children", "parent_of", "r_end", "r_start", "raw", "root_id", "sector", "span_of",
                 "window")

    def __init__(self, root_id: int, r_start: int, r_end: int) -> None:
        self.root_id = root_id
        self.r_start = r_start
        self.r_end = r_end
        self.span_of: dict[int, SpanRecord] = {}
        self.parent_of: dict[int, int] = {}
        self.raw: dict[int, tuple[int, int]] = {}
        self.sector: dict[int, str | None] = {root_id: None}
        self.window: dict[int, tuple[int, int]] = {root_id: (r_start, r_end)}
        self.children: dict[int, list[int]] = {}


def _index(tree: _Tree, spans: Sequence[SpanRecord], sector_of: Callable[[SpanRecord], str | None]
           ) -> dict[int, str | None]:
    """Step 1, one pass: parent, raw interval and own sector of each span. Orphans hang off the root."""
    root_id, r_start = tree.root_id, tree.r_start
    span_of, parent_of, raw = tree.span_of, tree.parent_of, tree.raw
    own: dict[int, str | None] = {}
    for s in spans:
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
    return own


def _inherit(tree: _Tree, own: Mapping[int, str | None]) -> None:
    """Step 2, top-down: a span's sector is its own or its nearest sector ancestor's; its window (for
    the critical path) is clipped to its parent's window, as Jaeger does."""
    span_of, parent_of, raw = tree.span_of, tree.parent_of, tree.raw
    sector, window, root_id = tree.sector, tree.window, tree.root_id
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


def _splits(tree: _Tree) -> tuple[list[str], dict[str, int], int]:
    """Step 3: sector unions clipped to the lap window, sectors ordered by first start, other time."""
    r_start, r_end = tree.r_start, tree.r_end
    per_sector: dict[str, list[tuple[int, int]]] = {}
    first_start: dict[str, int] = {}
    covered: list[tuple[int, int]] = []
    children, window, parent_of, sector = tree.children, tree.window, tree.parent_of, tree.sector
    root_id = tree.root_id
    for sid, (st, en) in tree.raw.items():
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
    return names, sectors_ns, (r_end - r_start) - union_ns(covered)


_Shares = tuple[list[str], dict[str, int], int, dict[str, int], int, dict[int, SpanRecord],
                list[str | None]]
_MAX_SPAN_ID = 0xFFFF_FFFF_FFFF_FFFF  # ids above print longer than 16 hex digits: text order differs


def _flat(root_id: int, r_start: int, r_end: int, spans: Sequence[SpanRecord],
          sector_of: Callable[[SpanRecord], str | None], rules: bool = True) -> _Shares | None:
    """Steps 1-4 at once for the common lap, every span a direct child of the root (no parent chain to
    walk, each window is the span clipped to the lap): (sector names, sector unions, other time,
    critical-path time per sector, critical-path other time, spans by id, each span's sector in the
    same order, for the timeline); None for any other shape, which the general steps handle. Same
    integers as the general steps (tests/core/test_properties.py). Without sector ``rules`` a span's
    sector is its ``chronograph.sector`` text, read here (``sector_of`` only for other values).
    """
    span_of: dict[int, SpanRecord] = {}
    own: list[str | None] = []
    first_start: dict[str, int] = {}
    per_sector: dict[str, list[tuple[int, int]]] = {}
    covered: list[tuple[int, int]] = []
    kids: list[tuple[int, int, int, str | None]] = []  # (window end, id, window start, sector)
    for s in spans:
        sid = s.span_id
        if sid == root_id or sid in span_of:
            continue
        p = s.parent_id
        if p != root_id and p is not None:
            return None
        span_of[sid] = s
        st = s.start_time or r_start
        en = s.end_time or st
        if rules:
            name = sector_of(s)
        else:
            attrs = s.attributes
            name = attrs.get(SECTOR_ATTR) if attrs else None
            if name is not None and name.__class__ is not str:
                name = sector_of(s)
        own.append(name)
        a = st if st > r_start else r_start
        b = en if en < r_end else r_end
        if b > a:
            kids.append((b, sid, a, name))
            if name is not None:
                covered.append((a, b))
                intervals = per_sector.get(name)
                if intervals is None:
                    per_sector[name] = [(a, b)]
                else:
                    intervals.append((a, b))
        if name is not None:
            first = first_start.get(name)
            if first is None or st < first:
                first_start[name] = st
    if first_start:
        names = sorted(first_start, key=lambda n: (first_start[n], n)) if len(first_start) > 1 else [
            *first_start]
        sectors_ns = {n: union_ns(per_sector[n]) if n in per_sector else 0 for n in names}
    else:
        names, sectors_ns = [], {}
    if not covered:
        # No time in any sector (a plain web request): the lap is all other time, and so is its
        # critical path, whose sections partition the lap. No sort, no walk.
        return names, sectors_ns, r_end - r_start, {}, r_end - r_start, span_of, own
    other_ns = (r_end - r_start) - union_ns(covered)
    # Jaeger's critical path over leaves: the last-finishing child (ties: by id), then the last one
    # ending before its start, and so on; the root's own time between them is outside any sector.
    cp_ns: dict[str, int] = {}
    cp_other = 0
    cursor = r_end
    if len(kids) > 1:
        kids.sort(reverse=True)  # by (end, id): ids are unique, so the sort never compares further
    for b, _, a, name in kids:
        if b > cursor:
            continue
        if cursor > b:
            cp_other += cursor - b
        if name is None:
            cp_other += b - a
        else:
            cp_ns[name] = cp_ns.get(name, 0) + (b - a)
        cursor = a
    if cursor > r_start:
        cp_other += cursor - r_start
    return names, sectors_ns, other_ns, cp_ns, cp_other, span_of, own


def _critical_shares(tree: _Tree) -> tuple[dict[str, int], int]:
    """Step 4: the critical path's time per sector, and the part outside any sector."""
    cp_ns: dict[str, int] = {}
    cp_other = 0
    sector = tree.sector
    for sid, a, b in critical_path(tree.root_id, tree.window, tree.children):
        name = sector[sid]
        if name is None:
            cp_other += b - a
        else:
            cp_ns[name] = cp_ns.get(name, 0) + (b - a)
    return cp_ns, cp_other


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value))
    except ValueError:
        return None


_Row = tuple[str | None, str, int, int, int, int, bool]  # a SectorSpan's fields, ids as integers
_Built = tuple[list[LapEvent] | None, list[_Row]]


def _sector_span(sector: str | None, name: str, span_id: int, parent_id: int, start_ns: int, end_ns: int,
                 error: bool) -> SectorSpan:
    return SectorSpan(sector, name, f"{span_id:016x}", f"{parent_id:016x}", start_ns, end_ns, error)


_EVENT_TIME = attrgetter("timestamp_ns")
_NO_EVENTS: tuple[tuple[tuple[Any, ...], ...], Callable[..., LapEvent]] = ((), LapEvent)


def _hex_order(row: _Row) -> tuple[int, str]:
    return row[4], f"{row[2]:016x}"


def _unbuilt() -> None:  # pragma: no cover - a marker, never called (see _Timeline._load)
    """``Lazy._make`` of a timeline not built yet."""


class _Timeline(Lazy[SectorSpan]):
    """A lap's span rows (this sequence, ``lap.spans``) and events (:meth:`events`, what ``lap.events``
    reads), both built on the first use of either.

    Once built, it lets go of the spans: a lap kept by a sink (the flight recorder keeps thousands)
    then holds its timeline, not every span record and SDK span it was derived from. Rows are kept as
    plain tuples (the garbage collector stops tracking them) until someone reads ``lap.spans``. A flat
    lap keeps what the fast path found (spans by id, their sectors) so the timeline needs no span tree.
    One object for the rows and the build: reading both costs a few calls, not a chain each.
    """

    __slots__ = ("_events", "_source")

    def __init__(self, deriver: Deriver, root: SpanRecord, root_id: int, tree: _Tree | None,
                 span_of: dict[int, SpanRecord], own: list[str | None]) -> None:
        self._make = _unbuilt  # not None until built: what Lazy checks
        self._items = None
        self._compact = None
        self._item = None
        self._events: list[LapEvent] | tuple[tuple[tuple[Any, ...], ...], Callable[..., LapEvent]] = (
            _NO_EVENTS)
        self._source: tuple[Deriver, SpanRecord, int, _Tree | None, dict[int, SpanRecord],
                            list[str | None]] | None = (deriver, root, root_id, tree, span_of, own)

    def _load(self) -> None:
        source = self._source
        if source is None:  # built (by another thread, maybe: it clears the source last but one)
            return
        deriver, root, root_id, tree, span_of, own = source
        if tree is None:
            events, rows = deriver._flat_timeline(root, root_id, span_of, own)
        else:
            events, rows = deriver._timeline(root, tree)
        if events:
            self._events = events
        self._item = _sector_span
        self._compact = tuple(rows)
        self._source = None
        self._make = None  # last: another thread seeing it None finds what was built

    def events(self) -> list[LapEvent] | tuple[tuple[tuple[Any, ...], ...], Callable[..., LapEvent]]:
        """The ``make`` of the lap's events (a :class:`Lazy`): the list, or no compact tuples."""
        if self._make is not None:
            self._load()
        return self._events


_LAP_FIELDS = ("request_id", "trace_id", "span_id", "command", "timestamp", "start_ns", "end_ns", "lap_ms",
               "other_ms", "sectors", "critical_path", "critical_other_ms", "status", "error", "tier",
               "customer", "score", "cost", "events", "spans", "error_message", "session_id",
               "service_name", "span_count", "truncated")
if tuple(f.name for f in fields(Lap)) != _LAP_FIELDS:  # pragma: no cover - derive passes them in order
    raise ImportError("otel_chronograph: Lap's fields changed; update Deriver.derive")


class Deriver:
    """Holds what the config fixes (rules, thresholds, rate card) so each derivation is just arithmetic."""

    def __init__(self, config: ChronographConfig) -> None:
        self._sector_for = compile_sector_rules(config.sectors.rules)
        self._has_sector_rules = bool(config.sectors.rules)
        self._status = config.status
        # Fixed by the config like the rates below: one dict lookup per lap, not a model method call.
        self._default_thresholds = (config.status.green_ms, config.status.yellow_ms)
        self._thresholds = {cmd: config.status.thresholds(cmd) for cmd in config.status.commands}
        billing = config.billing
        self._tiers = dict(billing.tiers)
        self._rates = dict(billing.rates)
        self._default_rate = billing.default_rate
        # One Decimal per (command, tier): the same object each lap, so its text is formatted once.
        self._costs: dict[tuple[str, str], Decimal] = {}
        self._default_tier = billing.default_tier
        self._unknown_tier = billing.unknown_tier_multiplier
        self._max_events = config.recorder.max_events_per_lap
        self.truncated_values = 0  # event values cut to the bounds below (not exact under races: a gauge)
        ident = config.laps.identity
        self._identity = {key: rule for key, rule in (
            ("customer", compile_identity(ident.customer)), ("tier", compile_identity(ident.tier)),
            ("command", compile_identity(ident.command)), ("score", compile_identity(ident.score)),
            ("session", compile_identity(ident.session))) if rule is not None}

    def cost(self, command: str, tier: str) -> Decimal:
        key = (command, tier)
        cost = self._costs.get(key)
        if cost is None:
            rate = self._rates.get(command, self._default_rate)
            multiplier = self._tiers.get(tier, self._unknown_tier)
            cost = rate * multiplier
            if len(self._costs) >= _MAX_CACHED:  # commands come from the application: bounded
                self._costs.clear()
            self._costs[key] = cost
        return cost

    def sector_of(self, span: SpanRecord) -> str | None:
        attrs = span.attributes
        if attrs:
            explicit = attrs.get(SECTOR_ATTR)
            if explicit is not None:
                return explicit if explicit.__class__ is str else str(first_value(explicit))
        if self._has_sector_rules:
            return self._sector_for(span.name, span.kind, attrs, span.resource)
        return None

    def _identify(self, root: SpanRecord, rule_command: str | None, context: Mapping[str, Any] | None
                  ) -> tuple[str, str, str | None, float | None, str | None]:
        """Step 5: command, tier, customer, score, session: code's attributes, then the lap rule's
        command, then identity rules (span attributes, resource, baggage), then defaults."""
        attrs = root.attributes
        found: Mapping[str, Any] = EMPTY
        if self._identity:
            found = {}
            resource, baggage = root.resource, context or EMPTY
            for key, lookup in self._identity.items():
                value = lookup(attrs, resource, baggage)
                if value is not None:
                    found[key] = value
        get = attrs.get
        explicit = get("chronograph.command")
        if explicit:
            command = explicit if explicit.__class__ is str else str(first_value(explicit))
        elif rule_command is not None:
            command = rule_command
        elif "command" in found:
            command = str(found["command"])
        else:
            command = command_from_attributes(root.name, attrs)
        if found:
            tier_attr, customer, score_attr, session = (
                get("chronograph.tier", found.get("tier")),
                get("chronograph.customer", found.get("customer")),
                get("chronograph.score", found.get("score")), get("session.id", found.get("session")))
        else:
            tier_attr, customer, score_attr, session = (
                get("chronograph.tier"), get("chronograph.customer"), get("chronograph.score"),
                get("session.id"))
        if tier_attr is None:
            tier = self._default_tier
        else:
            tier = tier_attr if tier_attr.__class__ is str else str(first_value(tier_attr))
        return (command, tier, str(first_value(customer)) if customer is not None else None,
                _number(first_value(score_attr)) if score_attr is not None else None,
                str(first_value(session)) if session is not None else None)

    def derive(
        self,
        root: SpanRecord,
        spans: Sequence[SpanRecord],
        command: str | None = None,
        truncated: bool = False,
        context: Mapping[str, Any] | None = None,
    ) -> Lap:
        """Derive a lap from its root and the descendants that ended in time (any order).

        ``command`` is a lap rule's command; ``context`` what the lap's start context said (baggage).
        """
        root_id = root.span_id
        r_start, r_end = root.start_time, root.end_time
        if r_end < r_start:
            r_end = r_start
        shares = _flat(root_id, r_start, r_end, spans, self.sector_of, self._has_sector_rules)
        tree: _Tree | None = None
        if shares is None:
            own: list[str | None] = []
            tree = self._tree(root_id, r_start, r_end, spans)
            names, sectors_ns, other_ns = _splits(tree)
            cp_ns, cp_other = _critical_shares(tree)
            span_of = tree.span_of
        else:
            names, sectors_ns, other_ns, cp_ns, cp_other, span_of, own = shares
        cmd, tier, customer, score, session = self._identify(root, command, context)

        # Step 6: status.
        lap_ms = (r_end - r_start) / _NS_PER_MS
        green, yellow = self._thresholds.get(cmd, self._default_thresholds) if self._thresholds else (
            self._default_thresholds)
        status: Status = status_for(lap_ms, green, yellow)
        error = root.error
        error_message = None
        if error:
            error_message = root.status_message
            if self._status.on_error != "time":
                status = self._status.on_error
            if not error_message:
                error_message = _exception_message(root, span_of.values())

        cost = self._costs.get((cmd, tier))  # step 7: price (the cache of self.cost, read here)
        if cost is None:
            cost = self.cost(cmd, tier)

        hex_id = "%016x" % root_id  # noqa: UP031 - cheaper than an f-string's format spec
        timeline = _Timeline(self, root, root_id, tree, span_of, own)
        service = root.resource.get("service.name") if root.resource else None
        # Positional (the field order is checked at import, _LAP_FIELDS): 25 keywords cost more
        # than the rest of this method's own work.
        return Lap(
            "req_" + hex_id,  # request_id
            "%032x" % root.trace_id,  # noqa: UP031 - trace_id
            hex_id,  # span_id
            cmd,  # command
            r_start // _NS_PER_MS,  # timestamp
            r_start,  # start_ns
            r_end,  # end_ns
            lap_ms,
            other_ns / _NS_PER_MS,  # other_ms
            {n: v / _NS_PER_MS for n, v in sectors_ns.items()} if sectors_ns else {},  # sectors
            {n: cp_ns[n] / _NS_PER_MS for n in names if n in cp_ns} if cp_ns else {},  # critical_path
            cp_other / _NS_PER_MS,  # critical_other_ms
            status,
            error,
            tier,
            customer,
            score,
            cost,
            Lazy(timeline.events),  # events
            timeline,  # spans
            error_message,
            session,  # session_id
            str(service) if service else None,  # service_name
            len(span_of) + 1,  # span_count
            truncated,
        )

    def _tree(self, root_id: int, r_start: int, r_end: int, spans: Sequence[SpanRecord]) -> _Tree:
        """Steps 1-2: spans indexed, sectors inherited, windows clipped."""
        tree = _Tree(root_id, r_start, r_end)
        _inherit(tree, _index(tree, spans, self.sector_of))
        return tree

    def _timeline(self, root: SpanRecord, tree: _Tree) -> _Built:
        """Span rows (clipped to the lap) and span events in time order, for timelines and flamegraphs:
        the flat builder's loop, with each span's inherited sector and parent from the tree."""
        sector = tree.sector
        return self._flat_timeline(root, tree.root_id, tree.span_of, [sector[sid] for sid in tree.span_of],
                                   tree.parent_of)

    def _flat_timeline(self, root: SpanRecord, root_id: int, span_of: dict[int, SpanRecord],
                       own: list[str | None], parent_of: dict[int, int] | None = None) -> _Built:
        """What :meth:`_timeline` builds, for a lap the fast path derived (every span a child of the
        root, ``own`` their sectors in ``span_of``'s order): no span tree to build. ``parent_of``: each
        span's parent, for any other lap (None: the root).

        Rows go in a waterfall's order: by start (clipped to the lap), then id as text. Spans usually
        come in that order already (they end in it); rows are sorted only when they did not, or when
        a start was clipped or an id is longer than 16 hex digits (its text sorts differently).
        """
        rows: list[_Row] = []
        append = rows.append
        with_events: list[tuple[int, int, SpanRecord, str | None]] | None = None
        r_start, r_end = root.start_time, root.end_time
        if r_end < r_start:
            r_end = r_start
        last, last_id, resort = r_start, -1, False
        # span_of is keyed by span_id and own is as long (_flat fills both); zip(strict=True) would
        # parse a keyword argument every lap.
        for s, name in zip(span_of.values(), own):  # noqa: B905
            sid = s.span_id
            st = s.start_time or r_start
            if (st <= last and (st < last or sid < last_id)) or sid > _MAX_SPAN_ID:
                resort = True
            last, last_id = st, sid
            en = s.end_time or st
            b = en if en < r_end else r_end
            a = st if st > r_start else r_start
            append((name, s.name, sid, root_id if parent_of is None else parent_of[sid], a,
                    b if b > a else a, s.error))
            if s.events:
                if with_events is None:
                    with_events = []
                with_events.append((st, sid, s, name))
        if resort and len(rows) > 1:
            rows.sort(key=_hex_order)
        return self._span_events(root, r_start, with_events), rows

    def _span_events(self, root: SpanRecord, r_start: int,
                     with_events: list[tuple[int, int, SpanRecord, str | None]] | None
                     ) -> list[LapEvent] | None:
        """The events of the root, then of the spans in ``with_events`` in start order (then id), so
        that events at the same instant come out in the same order whatever order the spans arrived
        in; in time order (a stable sort: per span, in the span's own order). None: no events."""
        if with_events is None and not root.events:
            return None
        events: list[LapEvent] = []
        limit = self._max_events
        if root.events:
            self._events(root.events, None, root.name, r_start, events, limit)
        if with_events is not None:
            if len(with_events) > 1:
                with_events.sort()  # (start, id) pairs are unique: never compares the records
            for _, _, s, name in with_events:
                self._events(s.events, name, s.name, r_start, events, limit)
        if len(events) > 1:
            events.sort(key=_EVENT_TIME)
        return events

    def _events(self, source: Sequence[Any], sector: str | None, span_name: str, r_start: int,
                out: list[LapEvent], limit: int) -> None:
        for e in source:
            if len(out) >= limit:
                return
            out.append(LapEvent(e.name, e.timestamp, (e.timestamp - r_start) / _NS_PER_MS, sector,
                                span_name, self._bounded(e.attributes)))

    def _bounded(self, attributes: Mapping[str, Any] | None) -> dict[str, Any]:
        """At most MAX_EVENT_ATTRIBUTES values, strings cut at MAX_VALUE_CHARS, sequences at
        MAX_SEQUENCE, each cut marked in the value and counted in ``truncated_values``."""
        if not attributes:
            return {}
        out: dict[str, Any] = {}
        over = len(attributes) > MAX_EVENT_ATTRIBUTES
        for i, (key, value) in enumerate(attributes.items()):
            if over and i >= MAX_EVENT_ATTRIBUTES - 1:  # the marker takes the last place
                self.truncated_values += len(attributes) - i
                out["chronograph.truncated_attributes"] = len(attributes) - i
                break
            out[key] = self._cut(value)
        return out

    def _cut(self, value: Any) -> Any:
        if isinstance(value, (str, bytes)):
            if len(value) <= MAX_VALUE_CHARS:
                return value
            self.truncated_values += 1
            if isinstance(value, bytes):
                return value[:MAX_VALUE_CHARS]
            return f"{value[:MAX_VALUE_CHARS]}…[truncated {len(value) - MAX_VALUE_CHARS} characters]"
        if isinstance(value, (tuple, list)):
            if len(value) > MAX_SEQUENCE:
                self.truncated_values += 1
                value = value[:MAX_SEQUENCE]
            return tuple(self._cut(v) for v in value)
        return value


_MAX_CACHED = 4096
_cost_texts: dict[int, tuple[Decimal, str]] = {}
_sector_keys: dict[str, str] = {}


def cost_text(cost: Decimal) -> str:
    """``format(cost, "f")`` (about 1 µs), remembered per Decimal object (keyed by identity: equal
    Decimals can print differently, 1.0 and 1.00)."""
    hit = _cost_texts.get(id(cost))
    if hit is not None and hit[0] is cost:
        return hit[1]
    text = format(cost, "f")
    if len(_cost_texts) >= _MAX_CACHED:
        _cost_texts.clear()
    _cost_texts[id(cost)] = (cost, text)
    return text


def _sector_key(name: str) -> str:
    key = _sector_keys.get(name)
    if key is None:
        key = f"chronograph.sector.{name}.ms"
        if len(_sector_keys) >= _MAX_CACHED:
            _sector_keys.clear()
        _sector_keys[name] = key
    return key


def lap_attributes(lap: Lap) -> dict[str, Any]:
    """The ``chronograph.*`` attributes the exported lap span carries."""
    cost = lap.cost
    hit = _cost_texts.get(id(cost))  # cost_text's cache, read here: a call less per lap
    out: dict[str, Any] = {
        "chronograph.lap": True,
        "chronograph.command": lap.command,
        "chronograph.lap_ms": lap.lap_ms,
        "chronograph.other_ms": lap.other_ms,
        "chronograph.status": lap.status,
        "chronograph.cost": hit[1] if hit is not None and hit[0] is cost else cost_text(cost),
        "chronograph.request_id": lap.request_id,
        "chronograph.tier": lap.tier,
    }
    if lap.customer is not None:
        out["chronograph.customer"] = lap.customer
    sectors = lap.sectors
    if sectors:
        for name, ms in sectors.items():
            out[_sector_key(name)] = ms
    if lap.error:
        out["chronograph.error"] = True
    return out
