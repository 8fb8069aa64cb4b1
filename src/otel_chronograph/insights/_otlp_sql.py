"""OTLP JSON lines to ``spans`` rows inside DuckDB: the ingest fast path.

Decoding OTLP JSON in Python costs tens of microseconds per span; DuckDB's JSON reader does it in C++
on every core. This module holds the SQL that turns one chunk of the Collector ``file`` exporter's
output (one ``TracesData`` per line, or a Jaeger ``/api/v3/traces`` response per line) into exactly the
rows :func:`._store.span_row` makes from the Python decoder's records (a test holds the two equal).

It is strict: a chunk with anything the Python decoder would refuse (a line that is not JSON or not
trace data, an id of the wrong size) raises :class:`ChunkRefused`, and the caller re-reads that chunk
with the Python decoder, which reports each bad line as ``file:line`` and keeps the good ones.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._schema import NEW_SPANS

if TYPE_CHECKING:
    import duckdb

__all__ = ["ChunkRefused", "stage_chunk"]

# OTLP AnyValue -> the JSON value the Python decoder stores (ints as numbers, bytes as hex, arrays as
# lists); a kvlist stays as OTLP wrote it. Macros are per connection (TEMP).
_VALUE = ("STRUCT(stringValue VARCHAR, intValue VARCHAR, boolValue BOOLEAN, doubleValue DOUBLE, "
          'bytesValue VARCHAR, arrayValue STRUCT("values" JSON), kvlistValue JSON)')
_ATTRS = f'STRUCT("key" VARCHAR, "value" {_VALUE})[]'
_SPAN = ('STRUCT(traceId VARCHAR, spanId VARCHAR, parentSpanId VARCHAR, flags UBIGINT, "name" VARCHAR, '
         f"kind JSON, startTimeUnixNano VARCHAR, endTimeUnixNano VARCHAR, attributes {_ATTRS}, "
         f'events STRUCT("name" VARCHAR, timeUnixNano VARCHAR, attributes {_ATTRS})[], '
         "status STRUCT(code JSON, message VARCHAR))")
_RESOURCE_SPANS = f"STRUCT(resource STRUCT(attributes {_ATTRS}), scopeSpans STRUCT(spans {_SPAN}[])[])[]"
#: read_json parses straight into these types (one pass, typed: no JSON path lookups per value)
_COLUMNS = f"{{'resourceSpans': '{_RESOURCE_SPANS}', 'result': 'STRUCT(resourceSpans {_RESOURCE_SPANS})'}}"
_MACROS = (
    """CREATE OR REPLACE TEMP MACRO chrono_scalar(v) AS CASE
        WHEN v.stringValue IS NOT NULL THEN to_json(v.stringValue)
        WHEN v.intValue IS NOT NULL THEN to_json(CAST(v.intValue AS HUGEINT))
        WHEN v.boolValue IS NOT NULL THEN to_json(v.boolValue)
        WHEN v.doubleValue IS NOT NULL THEN to_json(v.doubleValue)
        WHEN v.bytesValue IS NOT NULL THEN to_json(lower(hex(from_base64(v.bytesValue))))
        WHEN v.kvlistValue IS NOT NULL THEN v.kvlistValue
        ELSE NULL END""",
    # an array's elements are scalars (OTLP allows nesting; a nested array or kvlist is kept as written)
    f"""CREATE OR REPLACE TEMP MACRO chrono_value(v) AS CASE
        WHEN v.arrayValue IS NOT NULL THEN to_json(list_transform(
            coalesce(CAST(v.arrayValue."values" AS {_VALUE}[]), []), lambda x: chrono_scalar(x)))
        ELSE chrono_scalar(v) END""",
    """CREATE OR REPLACE TEMP MACRO chrono_attrs(a) AS to_json(map_from_entries(list_transform(
        coalesce(a, []), lambda kv: {'k': kv.key, 'v': chrono_value(kv.value)})))""",
    # hex as most exporters write it, base64 as protobuf's own JSON mapping does; '' when neither
    """CREATE OR REPLACE TEMP MACRO chrono_id(t, size) AS CASE
        WHEN t IS NULL OR t = '' THEN NULL
        WHEN length(t) = 2 * size AND regexp_full_match(t, '[0-9a-fA-F]+') THEN lower(t)
        ELSE coalesce(lower(hex(try(from_base64(t)))), '') END""",
    """CREATE OR REPLACE TEMP MACRO chrono_kind(k) AS CASE
        WHEN k IS NULL THEN 'INTERNAL'
        WHEN json_type(k) = 'VARCHAR' THEN coalesce(list_extract(
            ['SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'],
            list_position(['SPAN_KIND_SERVER', 'SPAN_KIND_CLIENT', 'SPAN_KIND_PRODUCER',
                           'SPAN_KIND_CONSUMER'], k->>'$')), 'INTERNAL')
        ELSE coalesce(list_extract(['INTERNAL', 'SERVER', 'CLIENT', 'PRODUCER', 'CONSUMER'],
                                   TRY_CAST(k AS INTEGER)), 'INTERNAL') END""",
)

_STAGE = f"""
CREATE OR REPLACE TEMP TABLE chrono_staged AS
WITH docs AS (
    SELECT coalesce(resourceSpans, result.resourceSpans) AS rs,
           resourceSpans IS NOT NULL OR result.resourceSpans IS NOT NULL AS ok
    FROM read_json(?, format = 'newline_delimited', columns = {_COLUMNS},
                   maximum_object_size = 268435456)),
bad AS (SELECT count(*) FILTER (WHERE NOT ok) AS n FROM docs),
r AS (SELECT unnest(rs) AS r FROM docs WHERE ok),
-- a resource's JSON and service name once per resource, not once per span
res AS (SELECT chrono_attrs(r.resource.attributes) AS resource,
               coalesce(nullif(json_extract_string(chrono_value(list_filter(
                   coalesce(r.resource.attributes, []), lambda kv: kv.key = 'service.name')[1].value), '$'),
                   ''), 'unknown_service') AS service, r.scopeSpans AS scopes FROM r),
s AS (SELECT resource, service, unnest(scopes) AS sc FROM res),
x AS (SELECT resource, service, unnest(sc.spans) AS x FROM s),
rows AS (
    SELECT chrono_id(x.traceId, 16) AS trace_id, chrono_id(x.spanId, 8) AS span_id,
           chrono_id(x.parentSpanId, 8) AS parent_id, coalesce(x.flags, 0) AS flags,
           service,
           coalesce(x.name, '') AS name, chrono_kind(x.kind) AS kind,
           CAST(coalesce(nullif(x.startTimeUnixNano, ''), '0') AS BIGINT) AS start_ns,
           CAST(coalesce(nullif(x.endTimeUnixNano, ''), '0') AS BIGINT) AS end_raw,
           coalesce(CAST(x.status.code AS VARCHAR) IN ('2', '"STATUS_CODE_ERROR"'), false) AS error,
           x.status.message AS message, chrono_attrs(x.attributes) AS attributes,
           resource,
           to_json(list_transform(coalesce(x.events, []),
               lambda e: {{'name': coalesce(e.name, ''),
                          'time_ns': CAST(coalesce(nullif(e.timeUnixNano, ''), '0') AS BIGINT),
                          'attributes': chrono_attrs(e.attributes)}})) AS events
    FROM x)
SELECT trace_id, span_id, parent_id,
       parent_id IS NULL OR (flags & 768) = 768 AS parent_remote,
       service, name, service || ': ' || name AS operation, kind, start_ns,
       CASE WHEN end_raw = 0 THEN start_ns ELSE end_raw END AS end_ns,
       greatest(CASE WHEN end_raw = 0 THEN start_ns ELSE end_raw END - start_ns, 0) / 1e6 AS duration_ms,
       error, CASE WHEN error AND message <> '' THEN message END AS status_message,
       attributes, resource, events, ? AS label,
       (SELECT n FROM bad) AS bad_docs
FROM rows
"""

_CHECK = """SELECT count(*),
                   count(*) FILTER (WHERE trace_id IS NULL OR length(trace_id) <> 32
                                    OR span_id IS NULL OR length(span_id) <> 16
                                    OR length(coalesce(parent_id, '0123456789abcdef')) <> 16),
                   max(bad_docs)
            FROM chrono_staged"""

_INSERT = ("INSERT INTO spans BY NAME SELECT * EXCLUDE (bad_docs) FROM "
           f"({NEW_SPANS.format(source='chrono_staged')})")


class ChunkRefused(Exception):
    """The chunk holds something only the Python decoder can report well; re-read it there."""


def stage_chunk(conn: duckdb.DuckDBPyConnection, path: str, label: str) -> int:
    """Insert the spans of the OTLP JSON lines file ``path``; the number of spans read (not new).

    Raises :class:`ChunkRefused` (nothing inserted) when any line is not well-formed trace data.
    """
    import duckdb

    for macro in _MACROS:
        conn.execute(macro)
    try:
        conn.execute(_STAGE, [path, label])
        total, bad_ids, bad_docs = conn.execute(_CHECK).fetchall()[0]
    except duckdb.Error as exc:
        raise ChunkRefused(str(exc).splitlines()[0]) from None
    if not total:  # nothing, or only lines without resourceSpans: let the Python decoder say which
        raise ChunkRefused("no spans")
    if bad_ids or bad_docs:
        raise ChunkRefused(f"{bad_ids} malformed id(s), {bad_docs} line(s) without resourceSpans")
    conn.execute(_INSERT)
    conn.execute("DROP TABLE chrono_staged")
    return int(total)
