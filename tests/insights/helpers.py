"""Building insights stores for tests: spans as keyword arguments, rows written through the real store.

``span(...)`` makes a :class:`SpanRecord` the way a source would; ``store(path, records)`` writes them
with the production ``span_row``/``insert_spans`` path, so a test reads what ingest would have stored.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import duckdb
from opentelemetry.trace import SpanKind

from otel_chronograph.engine import EventRecord, SpanRecord
from otel_chronograph.insights._store import insert_spans, open_store, span_row

#: 2026-11-02T00:00:00Z, a Monday: generated telemetry starts here so weekdays are known.
EPOCH_NS = 1_793_577_600 * 1_000_000_000
_ids = itertools.count(1)


def new_id() -> int:
    return next(_ids)


def span(name: str, start_s: float, duration_ms: float, *, service: str = "web",
         trace: int | None = None, span_id: int | None = None, parent: int | None = None,
         error: bool = False, attributes: Mapping[str, Any] | None = None,
         events: Iterable[tuple[str, float, Mapping[str, Any]]] = (),
         kind: SpanKind = SpanKind.SERVER) -> SpanRecord:
    """A record starting ``start_s`` seconds after :data:`EPOCH_NS` (fresh ids unless given)."""
    start = EPOCH_NS + int(start_s * 1e9)
    return SpanRecord(trace if trace is not None else new_id(), span_id if span_id is not None else new_id(),
                      parent, name, kind, start, start + int(duration_ms * 1e6),
                      attributes=dict(attributes or {}),
                      events=[EventRecord(n, EPOCH_NS + int(t * 1e9), dict(a)) for n, t, a in events],
                      error=error, resource={"service.name": service}, parent_remote=parent is None)


def store(path: Path, records: Iterable[SpanRecord], label: str = "prod") -> duckdb.DuckDBPyConnection:
    """A store at ``path`` holding ``records`` (an open writable connection)."""
    conn = open_store(str(path))
    insert_spans(conn, (span_row(r, label) for r in records))
    return conn


def otlp_json_line(records: Iterable[SpanRecord]) -> str:
    """``records`` as one line of OTLP JSON as the Collector's ``file`` exporter writes it (hex ids)."""
    import base64
    import json

    from google.protobuf.json_format import MessageToDict

    from otel_chronograph.insights._replay import IdRemap, RequestBuilder

    class SameIds(IdRemap):
        def trace(self, trace_id: int) -> int:
            return trace_id

        def span(self, trace_id: int, span_id: int) -> int:
            return span_id

    builder = RequestBuilder()
    for record in records:
        builder.add(record, SameIds(b""), 0)
    doc = MessageToDict(builder.request)
    for rs in doc.get("resourceSpans", ()):
        for ss in rs.get("scopeSpans", ()):
            for s in ss.get("spans", ()):
                for key in ("traceId", "spanId", "parentSpanId"):
                    if key in s:
                        s[key] = base64.b64decode(s[key]).hex()
    return json.dumps(doc)


def write_otlp_json(path: Path, records: Iterable[SpanRecord], per_line: int = 500) -> Path:
    """``records`` into ``path`` as OTLP JSON lines of at most ``per_line`` spans."""
    batch = list(records)
    path.write_text("".join(otlp_json_line(batch[i:i + per_line]) + "\n"
                            for i in range(0, len(batch), per_line)))
    return path
