"""Stored spans read back as :class:`SpanRecord` s, one list per trace, in trace start order.

``replay`` re-sends them and tests compare them with what was ingested, so a stored trace must come
back as the records a source would have produced. Rows stream from DuckDB in bounded fetches: memory
holds one fetch and the trace being assembled, never the whole store.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import SpanKind

from ..engine import EventRecord, SpanRecord

if TYPE_CHECKING:
    import duckdb

__all__ = ["record_of_row", "stored_traces"]

FETCH_ROWS = 10_000

_COLUMNS = ("trace_id, span_id, parent_id, parent_remote, name, kind, start_ns, end_ns, error, "
            "status_message, attributes, resource, events")


def _kind(name: str) -> SpanKind:
    try:
        return SpanKind[name]
    except KeyError:
        return SpanKind.INTERNAL


def record_of_row(row: Sequence[Any], resources: dict[str, Mapping[str, Any]]) -> SpanRecord:
    """One stored row (``_COLUMNS`` order) as a record; ``resources`` shares equal resource dicts
    between records, as a source does for the spans of one process."""
    (trace, span, parent, remote, name, kind, start, end, error, message, attrs, resource,
     events) = row
    shared = resources.get(resource)
    if shared is None:
        shared = resources[resource] = json.loads(resource)
    return SpanRecord(int(trace, 16), int(span, 16), int(parent, 16) if parent is not None else None,
                      name, _kind(kind), start, end, attributes=json.loads(attrs),
                      events=[EventRecord(e.get("name", ""), int(e.get("time_ns") or 0),
                                          e.get("attributes") or {}) for e in json.loads(events)],
                      error=bool(error), status_message=message, resource=shared,
                      parent_remote=bool(remote) if parent is not None else None)


def stored_traces(conn: duckdb.DuckDBPyConnection, where: str = "label = 'prod'",
                  params: Sequence[Any] = (), fetch_rows: int = FETCH_ROWS) -> Iterator[list[SpanRecord]]:
    """The spans matching ``where`` grouped per trace (each list one whole trace, spans in start
    order), traces in order of their first span's start."""
    cursor = conn.cursor()
    cursor.execute(f"""
        SELECT {_COLUMNS} FROM (
            SELECT *, min(start_ns) OVER (PARTITION BY trace_id) AS trace_start FROM spans WHERE {where})
        ORDER BY trace_start, trace_id, start_ns, span_id""", list(params))
    resources: dict[str, Mapping[str, Any]] = {}
    current: list[SpanRecord] = []
    current_id: str | None = None
    try:
        while rows := cursor.fetchmany(fetch_rows):
            for row in rows:
                if row[0] != current_id:
                    if current:
                        yield current
                    current, current_id = [], row[0]
                    if len(resources) > 1024:  # a bound: sharing is an optimisation, not a need
                        resources.clear()
                current.append(record_of_row(row, resources))
        if current:
            yield current
    finally:
        cursor.close()
