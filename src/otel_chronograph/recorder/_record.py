"""The flight record of one lap: its timeline of milestones and a summary of where the time went.

A :class:`FlightRecord` is built from a :class:`~otel_chronograph.Lap` (cheaply, on read: the store
keeps laps, not records). Laps also travel through SQLite as a compact JSON document
(:func:`encode_lap` / :func:`decode_lap`). What one record may hold is bounded (:func:`bounded_lap`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from .._lap import Lap, LapEvent, Lazy, SectorSpan
from .._vocab import NS_PER_MS as _NS_PER_MS
from .._vocab import iso_timestamp

__all__ = ["DETAILS_DROPPED", "MAX_DETAILS_CHARS", "MAX_MESSAGE_CHARS", "MAX_NAME_CHARS", "FlightRecord",
           "bounded_lap", "decode_lap", "encode_lap", "iso_timestamp", "share_percent"]

_DOC_VERSION = 1
_ENCODE = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


def share_percent(part: float, total: float) -> float:
    """``part`` as a percentage of ``total`` (0 when the total is 0)."""
    return 0.0 if total <= 0 else part * 100.0 / total


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return str(value)


@dataclass(frozen=True, slots=True)
class FlightRecord:
    """One request's flight record (the seed's ``FlightRecord``), derived from its lap."""

    id: str
    trace_id: str
    command: str
    conversation_id: str | None
    timestamp: int  # ms since the epoch, the lap start
    start_ns: int
    lap_ms: float
    other_ms: float
    sectors: dict[str, float]
    status: str
    error: bool
    error_message: str | None
    cost: Decimal
    tier: str
    customer: str | None
    service_name: str | None
    truncated: bool
    events: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    lap: Lap | None = field(default=None, repr=False, compare=False)

    @property
    def session_id(self) -> str | None:
        return self.conversation_id

    @property
    def iso_timestamp(self) -> str:
        return iso_timestamp(self.start_ns)

    @classmethod
    def from_lap(cls, lap: Lap) -> FlightRecord:
        return cls(
            id=lap.request_id, trace_id=lap.trace_id, command=lap.command,
            conversation_id=lap.session_id, timestamp=lap.timestamp, start_ns=lap.start_ns,
            lap_ms=lap.lap_ms, other_ms=lap.other_ms, sectors=dict(lap.sectors), status=lap.status,
            error=lap.error, error_message=lap.error_message, cost=lap.cost, tier=lap.tier,
            customer=lap.customer, service_name=lap.service_name, truncated=lap.truncated,
            events=timeline(lap), summary=summarize(lap), lap=lap,
        )

    def to_json(self) -> dict[str, Any]:
        """The record as a json.dumps-able dict (the seed's ``to_json``)."""
        return {
            "id": self.id,
            "trace_id": self.trace_id,
            "command": self.command,
            "conversation_id": self.conversation_id,
            "timestamp": self.iso_timestamp,
            "timestamp_ms": self.timestamp,
            "lap_ms": self.lap_ms,
            "status": self.status,
            "error": self.error,
            "error_message": self.error_message,
            "cost": format(self.cost, "f"),
            "tier": self.tier,
            "customer": self.customer,
            "service_name": self.service_name,
            "truncated": self.truncated,
            "sectors": dict(self.sectors),
            "events": [dict(e) for e in self.events],
            "summary": self.summary,
        }


def _milestone(ns: int, start_ns: int, stage: str, kind: str, sector: str | None,
               details: dict[str, Any]) -> dict[str, Any]:
    return {
        "timestamp": iso_timestamp(ns),
        "elapsed_ms": round((ns - start_ns) / _NS_PER_MS, 3),
        "stage": stage,
        "kind": kind,
        "sector": sector,
        "details": details,
        "_ns": ns,
    }


def _sector_heads(lap: Lap) -> list[SectorSpan]:
    """Spans that open a sector: in a sector, with a parent outside that sector (or the lap itself)."""
    sector_of = {s.span_id: s.sector for s in lap.spans}
    return [s for s in lap.spans
            if s.sector is not None and (s.parent_id is None or sector_of.get(s.parent_id) != s.sector)]


def _event_details(e: LapEvent) -> tuple[str, str, dict[str, Any]]:
    attrs = {k: _jsonable(v) for k, v in e.attributes.items()}
    if e.name == "exception":
        details = {k.removeprefix("exception."): v for k, v in attrs.items() if k != "exception.escaped"}
        details["span"] = e.span_name
        return "Exception", "error", details
    if e.span_name and e.sector is not None:
        attrs.setdefault("sector", e.sector)
    return e.name, "event", attrs


def timeline(lap: Lap) -> list[dict[str, Any]]:
    """The lap's milestones in time order: lap start, sector starts and ends, span events, lap end.

    Each has ``timestamp`` (ISO, UTC), ``elapsed_ms`` since the lap start, ``stage``, ``details``,
    plus ``kind`` (lap/sector_start/sector_end/event/error) and ``sector``.
    """
    start = lap.start_ns
    out: list[dict[str, Any]] = []
    begin: dict[str, Any] = {"command": lap.command}
    if lap.session_id is not None:
        begin["session"] = lap.session_id
    if lap.tier:
        begin["tier"] = lap.tier
    out.append(_milestone(start, start, "Lap Start", "lap", None, begin))
    for s in _sector_heads(lap):
        detail: dict[str, Any] = {} if s.name == s.sector else {"span": s.name}
        out.append(_milestone(s.start_ns, start, f"{s.sector} start", "sector_start", s.sector, detail))
        end_detail = dict(detail)
        end_detail["duration_ms"] = round((s.end_ns - s.start_ns) / _NS_PER_MS, 3)
        if s.error:
            end_detail["error"] = True
        out.append(_milestone(s.end_ns, start, f"{s.sector} end", "sector_end", s.sector, end_detail))
    seen_errors: set[tuple[Any, Any]] = set()
    for e in lap.events:
        stage, kind, details = _event_details(e)
        if kind == "error":
            # An exception escaping nested spans is recorded on each of them: keep the innermost.
            key = (details.get("type"), details.get("message"))
            if key in seen_errors:
                continue
            seen_errors.add(key)
        out.append(_milestone(e.timestamp_ns, start, stage, kind, e.sector, details))
    end: dict[str, Any] = {"status": lap.status, "lap_ms": round(lap.lap_ms, 3)}
    if lap.error:
        end["error"] = lap.error_message or True
    if lap.truncated:
        end["truncated"] = True
    out.append(_milestone(lap.end_ns, start, "Lap End", "lap", None, end))
    # At equal times: the lap start, then events, then sector ends, then sector starts, the lap end last.
    rank = {"event": 1, "error": 1, "sector_end": 2, "sector_start": 3}
    out.sort(key=lambda m: (m["_ns"], (0 if m["stage"] == "Lap Start" else 4) if m["kind"] == "lap"
                            else rank[m["kind"]]))
    for m in out:
        del m["_ns"]
    return out


def summarize(lap: Lap) -> dict[str, Any]:
    """Total, each sector's ms and share of the lap, and the remainder as Other (the seed's SUMMARY)."""
    total = lap.lap_ms
    breakdown = [
        {"name": name, "ms": round(ms, 3), "share": round(share_percent(ms, total), 2)}
        for name, ms in lap.sectors.items()
    ]
    return {
        "total_ms": round(total, 3),
        "breakdown": breakdown,
        "other": {"name": "Other", "ms": round(lap.other_ms, 3),
                  "share": round(share_percent(lap.other_ms, total), 2)},
        "critical_path": {k: round(v, 3) for k, v in lap.critical_path.items()},
    }


# -- compact lap documents (what SQLite stores) ------------------------------------------------


def encode_lap(lap: Lap) -> str:
    """A compact JSON document of the lap, enough to rebuild it with :func:`decode_lap`."""
    events: list[list[Any]] = [
        [e.name, e.timestamp_ns, e.elapsed_ms, e.sector, e.span_name, e.attributes] for e in lap.events]
    doc: list[Any] = [
        _DOC_VERSION, lap.request_id, lap.trace_id, lap.span_id, lap.command, lap.timestamp,
        lap.start_ns, lap.end_ns, lap.lap_ms, lap.other_ms, list(lap.sectors.items()),
        list(lap.critical_path.items()), lap.critical_other_ms, lap.status, lap.error, lap.tier,
        lap.customer, lap.score, str(lap.cost),
        events,
        _span_rows(lap.spans),
        lap.error_message, lap.session_id, lap.service_name, lap.span_count, lap.truncated,
    ]
    try:
        return _ENCODE(doc)
    except (TypeError, ValueError):  # an attribute json can't take (e.g. bytes): stringify it
        doc[19] = [[*ev[:5], {k: _jsonable(v) for k, v in ev[5].items()}] for ev in events]
        return json.dumps(doc, separators=(",", ":"), default=str)


def _span_rows(spans: Sequence[SectorSpan]) -> list[list[Any]]:
    """The document's span rows; from the compact tuples when the SectorSpans were never made (the
    SQLite writer then makes none for the laps the in-memory LRU keeps)."""
    rows = spans.compact() if isinstance(spans, Lazy) else None
    if rows is not None:  # (sector, name, span id, parent id, start, end, error), ids as integers
        return [[r[0], r[1], f"{r[2]:016x}", f"{r[3]:016x}", r[4], r[5], r[6]] for r in rows]
    return [[s.sector, s.name, s.span_id, s.parent_id, s.start_ns, s.end_ns, s.error] for s in spans]


def decode_lap(text: str | bytes) -> Lap:
    """The lap of an :func:`encode_lap` document (raises ``ValueError`` for anything else)."""
    try:
        d = json.loads(text)
        if not isinstance(d, list) or d[0] != _DOC_VERSION:
            raise ValueError("unknown flight record document version")
        return Lap(
            request_id=d[1], trace_id=d[2], span_id=d[3], command=d[4], timestamp=d[5], start_ns=d[6],
            end_ns=d[7], lap_ms=d[8], other_ms=d[9], sectors=dict(d[10]), critical_path=dict(d[11]),
            critical_other_ms=d[12], status=d[13], error=d[14], tier=d[15], customer=d[16], score=d[17],
            cost=Decimal(d[18]),
            events=[LapEvent(e[0], e[1], e[2], e[3], e[4], e[5]) for e in d[19]],
            spans=[SectorSpan(s[0], s[1], s[2], s[3], s[4], s[5], s[6]) for s in d[20]],
            error_message=d[21], session_id=d[22], service_name=d[23], span_count=d[24],
            truncated=d[25],
        )
    except (IndexError, KeyError, TypeError, ArithmeticError) as exc:
        raise ValueError(f"malformed flight record document: {exc}") from None


# -- bounds (what one record may hold) ----------------------------------------------------------
# The engine cuts single event values (4,096 characters, 64 attributes, 128-element sequences), but a
# lap may still carry 200 events of 64 such values (50 MB) and names nobody cut. Records live in memory
# (max_records of them) and on disk, so each one is bounded here; what is cut is marked where it was.

MAX_NAME_CHARS = 256  # command, span, sector and event names, session, service, customer, tier
MAX_MESSAGE_CHARS = 4096  # the error message
MAX_DETAILS_CHARS = 256 * 1024  # all event details (attributes) of one record, in characters
DETAILS_DROPPED = "chronograph.details_dropped"
_MARKER_ROOM = 48  # "…[truncated N characters]" fits in this


def _value_chars(value: Any) -> int:
    if isinstance(value, str):
        return len(value) + 2
    if isinstance(value, (bytes, bytearray)):
        return 4 * len(value) + 3  # stored as its repr
    if isinstance(value, (list, tuple)):
        return 2 + sum(_value_chars(v) + 1 for v in value)
    if isinstance(value, Mapping):
        return _details_chars(value)
    return 24


_SCALARS = frozenset({int, float, bool, type(None)})


def _details_chars(attributes: Mapping[Any, Any]) -> int:
    n = 4 * len(attributes)
    for k, v in attributes.items():
        n += len(k) if type(k) is str else len(str(k))
        t = type(v)
        n += len(v) + 2 if t is str else 24 if t in _SCALARS else _value_chars(v)
    return n


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    keep = limit - _MARKER_ROOM
    return f"{text[:keep]}…[truncated {len(text) - keep} characters]"


def _cut_opt(text: str | None, limit: int = MAX_NAME_CHARS) -> str | None:
    return None if text is None else _cut(text, limit)


def _within(lap: Lap) -> list[int] | None:
    """None when ``lap`` is within every bound (the usual case, checked in one pass, few calls), else
    each event's details size, for :func:`bounded_lap` to cut it."""
    limit = MAX_NAME_CHARS
    session, service, customer, message = lap.session_id, lap.service_name, lap.customer, lap.error_message
    ok = not (len(lap.command) > limit or len(lap.tier) > limit
              or (session is not None and len(session) > limit)
              or (service is not None and len(service) > limit)
              or (customer is not None and len(customer) > limit)
              or (message is not None and len(message) > MAX_MESSAGE_CHARS))
    for name in lap.sectors:
        if len(name) > limit:
            ok = False
    for name in lap.critical_path:
        if len(name) > limit:
            ok = False
    spans = lap.spans
    try:  # a Lazy (isinstance would call ABCMeta.__instancecheck__: lap.spans is a subclass of Lazy)
        compact = spans.compact  # type: ignore[attr-defined]
    except AttributeError:  # a plain sequence: a bounded copy, a lap read back from SQLite
        compact = None
    rows = compact() if compact is not None else None
    if rows is not None:  # not made into SectorSpans yet (maybe never): read the tuples
        for row in rows:  # (sector, name, ...): SectorSpan's field order
            sector = row[0]
            if len(row[1]) > limit or (sector is not None and len(sector) > limit):
                ok = False
    else:
        for span in spans:
            if len(span.name) > limit or (span.sector is not None and len(span.sector) > limit):
                ok = False
    events = lap.events
    if isinstance(events, Lazy) and events.compact() == ():
        return None if ok else []
    sizes: list[int] = []
    for e in events:
        if len(e.name) > limit or len(e.span_name) > limit or (
                e.sector is not None and len(e.sector) > limit):
            ok = False
        sizes.append(_details_chars(e.attributes) if e.attributes else 0)
    return None if ok and sum(sizes) <= MAX_DETAILS_CHARS else sizes


def bounded_lap(lap: Lap) -> Lap:
    """``lap`` itself when it is within the bounds above (the usual case, checked in one pass), else a
    copy with long names cut (marked ``…[truncated N characters]``), event details beyond the
    record's budget replaced by a ``chronograph.details_dropped`` note (every milestone stays on the
    timeline), and ``truncated`` set."""
    sizes = _within(lap)
    if sizes is None:
        return lap
    note = {DETAILS_DROPPED: f"this record's event details exceed {MAX_DETAILS_CHARS} characters"}
    note_chars = _details_chars(note)
    budget = MAX_DETAILS_CHARS
    events: list[LapEvent] = []
    for e, size in zip(lap.events, sizes, strict=True):
        attributes = e.attributes
        if size > budget:
            attributes = dict(note) if note_chars <= budget else {}
            size = _details_chars(attributes)
        budget -= size
        events.append(LapEvent(_cut(e.name, MAX_NAME_CHARS), e.timestamp_ns, e.elapsed_ms, _cut_opt(e.sector),
                               _cut(e.span_name, MAX_NAME_CHARS), attributes))
    spans = [SectorSpan(_cut_opt(s.sector), _cut(s.name, MAX_NAME_CHARS), s.span_id, s.parent_id, s.start_ns,
                        s.end_ns, s.error) for s in lap.spans]
    return replace(
        lap, command=_cut(lap.command, MAX_NAME_CHARS), session_id=_cut_opt(lap.session_id),
        service_name=_cut_opt(lap.service_name), customer=_cut_opt(lap.customer),
        tier=_cut(lap.tier, MAX_NAME_CHARS), error_message=_cut_opt(lap.error_message, MAX_MESSAGE_CHARS),
        sectors={_cut(k, MAX_NAME_CHARS): v for k, v in lap.sectors.items()},
        critical_path={_cut(k, MAX_NAME_CHARS): v for k, v in lap.critical_path.items()},
        events=events, spans=spans, truncated=True)
