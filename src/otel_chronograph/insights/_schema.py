"""The insights store's tables: one place that every command reads and the ingester writes.

A span row is unique by (trace_id, span_id), which makes ingest idempotent: ``NEW_SPANS`` is how
every writer inserts. Not a primary key: DuckDB keeps such an index in memory and inserting into
it grows slower as the table grows (1M spans: 11 s of inserts against 6.7 s for the anti-join).
Ids are lower-case hex (32 and 16 digits) as Jaeger and the OTLP JSON encoding show them, so a
person can paste them.
Times are integer nanoseconds since the epoch as OTLP carries them; ``duration_ms`` is stored so
detectors do not recompute it. An *operation* is ``"<service.name>: <span name>"`` (SPEC.md Part 2).
"""

from __future__ import annotations

DEFAULT_DB = "chronograph-insights.duckdb"

#: ``label`` tells production traces from test-run traces (``coverage --tests``); ``prod`` by default.
SPANS_DDL = """
CREATE TABLE IF NOT EXISTS spans (
    trace_id       VARCHAR NOT NULL,
    span_id        VARCHAR NOT NULL,
    parent_id      VARCHAR,            -- NULL for a root
    parent_remote  BOOLEAN NOT NULL,   -- the parent is in another process (or absent from the input)
    service        VARCHAR NOT NULL,   -- resource service.name ('unknown_service' when missing)
    name           VARCHAR NOT NULL,
    operation      VARCHAR NOT NULL,   -- '<service>: <name>'
    kind           VARCHAR NOT NULL,   -- INTERNAL | SERVER | CLIENT | PRODUCER | CONSUMER
    start_ns       BIGINT NOT NULL,
    end_ns         BIGINT NOT NULL,
    duration_ms    DOUBLE NOT NULL,
    error          BOOLEAN NOT NULL,   -- status code ERROR
    status_message VARCHAR,
    attributes     JSON NOT NULL,      -- span attributes as a JSON object (values as OTLP gives them)
    resource       JSON NOT NULL,      -- resource attributes as a JSON object
    events         JSON NOT NULL,      -- [{"name", "time_ns", "attributes"}]
    label          VARCHAR NOT NULL DEFAULT 'prod'
)
"""

#: One row per lap derived by the engine (``laps.scope: trace``) from the stored spans at ingest.
LAPS_DDL = """
CREATE TABLE IF NOT EXISTS laps (
    trace_id   VARCHAR NOT NULL,
    span_id    VARCHAR NOT NULL,       -- the lap root
    service    VARCHAR NOT NULL,
    command    VARCHAR NOT NULL,
    operation  VARCHAR NOT NULL,       -- '<service>: <command>'
    start_ns   BIGINT NOT NULL,
    lap_ms     DOUBLE NOT NULL,
    status     VARCHAR NOT NULL,       -- GREEN | YELLOW | RED
    error      BOOLEAN NOT NULL,
    customer   VARCHAR,
    tier       VARCHAR,
    cost       DOUBLE,
    sectors    JSON NOT NULL,          -- {"sector name": ms}
    critical_path JSON NOT NULL,       -- [sector name, ...]
    label      VARCHAR NOT NULL DEFAULT 'prod',
    PRIMARY KEY (trace_id, span_id)
)
"""

TABLES = (SPANS_DDL, LAPS_DDL)

#: ``SELECT`` the rows of ``{source}`` that are not stored yet (nor repeated inside ``{source}``)
NEW_SPANS = """SELECT * FROM (SELECT DISTINCT ON (trace_id, span_id) * FROM {source}) AS new
WHERE NOT EXISTS (SELECT 1 FROM spans AS old
                  WHERE old.trace_id = new.trace_id AND old.span_id = new.span_id)"""


def operation(service: str, span_name: str) -> str:
    """The operation key SPEC.md names: a service's span name."""
    return f"{service}: {span_name}"
