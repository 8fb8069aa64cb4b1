"""Lap scope for sources that see whole traces of ended spans (OTLP, files): which spans are lap roots,
and which spans belong to each lap (SPEC.md Part 2, "Lap scope and identity").

``service`` scope gives the laps the in-process processor gives: a local root (no parent, or a parent
in another process) of kind SERVER/CONSUMER, or a span marked by code or a lap rule; a lap holds every
descendant in its own process, nested laps included. Offline, "another process" means a parent known to
be remote (OTLP ``flags``), with a different resource, or absent from the input. ``trace`` scope gives
one lap per trace root holding every descendant, across services; a span whose parent is absent but
known to be in the same process is a fragment of a trace whose piece with the root has not arrived, and
gives no lap of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from opentelemetry.trace import SpanKind

from ._records import SpanRecord

__all__ = ["FoundLap", "split_laps"]

_LAP_KINDS = (SpanKind.SERVER, SpanKind.CONSUMER)

LapDecider = Callable[[str, SpanKind, Mapping[str, Any], Mapping[str, Any]], tuple[bool, str | None]]


@dataclass(frozen=True, slots=True)
class FoundLap:
    root: SpanRecord
    spans: list[SpanRecord]
    command: str | None
    truncated: bool


def _same_process(child: SpanRecord, parent: SpanRecord) -> bool:
    if child.parent_remote is not None:
        return not child.parent_remote
    return child.resource is parent.resource or child.resource == parent.resource


def split_laps(records: Sequence[SpanRecord], scope: Literal["service", "trace"], decide: LapDecider,
               auto_server_roots: bool = True, max_spans: int = 2000) -> list[FoundLap]:
    """The laps in one trace's records (any order), roots in start order."""
    by_id: dict[int, SpanRecord] = {}
    for r in records:
        by_id.setdefault(r.span_id, r)
    children: dict[int, list[SpanRecord]] = {}
    local_root: dict[int, bool] = {}
    for r in by_id.values():
        parent = by_id.get(r.parent_id) if r.parent_id is not None else None
        if parent is None or parent is r:
            local_root[r.span_id] = True
            continue
        children.setdefault(parent.span_id, []).append(r)
        local_root[r.span_id] = not _same_process(r, parent)
    roots: list[tuple[SpanRecord, str | None]] = []
    for r in by_id.values():
        if scope == "trace":
            parent_known = r.parent_id is not None and r.parent_id in by_id and r.parent_id != r.span_id
            # A span whose absent parent is known (OTLP flags) to be in its own process is a fragment,
            # not a trace root: its process's root has not arrived (or was dropped), so no lap.
            if not parent_known and not (r.parent_remote is False and r.parent_id not in (None, r.span_id)):
                roots.append((r, None))
            continue
        attrs = r.attributes
        marked = bool(attrs) and attrs.get("chronograph.lap") is True
        if marked or (auto_server_roots and local_root[r.span_id] and r.kind in _LAP_KINDS):
            roots.append((r, None))
        else:
            is_lap, command = decide(r.name, r.kind, attrs, r.resource)
            if is_lap:
                roots.append((r, command))
    roots.sort(key=lambda rc: (rc[0].start_time, rc[0].span_id))
    laps = []
    for root, command in roots:
        members: list[SpanRecord] = []
        stack = list(children.get(root.span_id, ()))
        seen = {root.span_id}
        while stack:
            s = stack.pop()
            if s.span_id in seen or (scope == "service" and local_root[s.span_id]):
                continue
            seen.add(s.span_id)
            members.append(s)
            stack.extend(children.get(s.span_id, ()))
        truncated = len(members) > max_spans - 1
        if truncated:
            members.sort(key=lambda s: (s.end_time, s.span_id))
            del members[max_spans - 1:]
        laps.append(FoundLap(root, members, command, truncated))
    return laps
