"""Opening the insights store and writing span rows: the one module that talks DDL to DuckDB.

Readers open it read-only so a report can run while nothing else writes; DuckDB allows one writing
process at a time, and a second writer gets a clear error naming the file instead of a lock traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .._lap import Lap
from ..engine import SpanRecord
from ._schema import DEFAULT_DB, NEW_SPANS, TABLES, operation

if TYPE_CHECKING:
    import duckdb

SpanRow = tuple[Any, ...]
F = TypeVar("F", bound=Callable[..., Any])

_SPAN_COLUMNS = ("trace_id", "span_id", "parent_id", "parent_remote", "service", "name", "operation",
                 "kind", "start_ns", "end_ns", "duration_ms", "error", "status_message", "attributes",
                 "resource", "events", "label")
_LAP_COLUMNS = ("trace_id", "span_id", "service", "command", "operation", "start_ns", "lap_ms", "status",
                "error", "customer", "tier", "cost", "sectors", "critical_path", "label")


def open_store(path: str = DEFAULT_DB, read_only: bool = False) -> duckdb.DuckDBPyConnection:
    """The store at ``path`` (created with its tables unless ``read_only``); ClickException if not
    (a missing file, one another process writes, a file that is not an insights store)."""
    import duckdb

    try:
        conn = duckdb.connect(path, read_only=read_only)
    except (duckdb.IOException, duckdb.InvalidInputException) as exc:
        what = "read" if read_only else "open for writing"
        raise click.ClickException(f"{path}: cannot {what} the insights store: {exc}") from None
    conn.execute("SET enable_progress_bar = false")  # ours (ingest) or none: never DuckDB's on stdout
    if not read_only:
        for ddl in TABLES:
            conn.execute(ddl)
        return conn
    try:
        conn.execute("SELECT 1 FROM spans LIMIT 0").fetchall()
    except duckdb.Error:
        conn.close()
        raise click.ClickException(f"{path}: not an insights store (no spans table); run "
                                   "'chronograph insights ingest' first") from None
    return conn


def _jsonable(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [_jsonable(v) for v in value]
    return str(value)


def _dumps(value: Any) -> str:
    # ensure_ascii: a lone surrogate in a name from untrusted input is stored escaped, never an error
    return json.dumps(_jsonable(value), ensure_ascii=True, separators=(",", ":"))


def _utf8(text: str) -> str:
    """``text`` storable as UTF-8: a lone surrogate (untrusted input) becomes a visible escape."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")


def span_row(record: SpanRecord, label: str = "prod") -> SpanRow:
    """One ``spans`` row for a record, in ``_SPAN_COLUMNS`` order."""
    service = _utf8(str(record.resource.get("service.name") or "unknown_service"))
    name = _utf8(record.name)
    message = None if record.status_message is None else _utf8(record.status_message)
    parent = f"{record.parent_id:016x}" if record.parent_id is not None else None
    events = [{"name": e.name, "time_ns": e.timestamp, "attributes": e.attributes} for e in record.events]
    return (f"{record.trace_id:032x}", f"{record.span_id:016x}", parent,
            bool(record.parent_remote) or parent is None, service, name,
            operation(service, name), record.kind.name, record.start_time, record.end_time,
            max(record.end_time - record.start_time, 0) / 1e6, record.error, message,
            _dumps(record.attributes), _dumps(record.resource), _dumps(events), label)


def insert_spans(conn: duckdb.DuckDBPyConnection, rows: Iterable[SpanRow]) -> None:
    """Insert rows; a (trace_id, span_id) already stored is left as it is (ingest is idempotent)."""
    _insert(conn, "INSERT INTO spans", _SPAN_COLUMNS, list(rows), NEW_SPANS.format(source="chrono_batch"))


def insert_laps(conn: duckdb.DuckDBPyConnection, rows: Iterable[SpanRow]) -> None:
    """Insert lap rows; a lap derived again (more of its trace arrived) replaces the earlier one."""
    _insert(conn, "INSERT OR REPLACE INTO laps", _LAP_COLUMNS, list(rows), "SELECT * FROM chrono_batch")


def _insert(conn: duckdb.DuckDBPyConnection, insert: str, columns: Sequence[str], rows: list[SpanRow],
            source: str) -> None:
    """``insert`` the rows ``source`` selects from them (``chrono_batch``), as one Arrow table:
    DuckDB's executemany is row by row, 50x slower."""
    if not rows:
        return
    import pyarrow as pa

    values = zip(*rows, strict=True)
    batch = pa.table({name: list(column) for name, column in zip(columns, values, strict=True)})
    conn.register("chrono_batch", batch)
    try:
        conn.execute(f"{insert} ({', '.join(columns)}) SELECT {', '.join(columns)} FROM ({source})")
    finally:
        conn.unregister("chrono_batch")


def lap_row(lap: Lap, label: str = "prod") -> SpanRow:
    """One ``laps`` row for a derived lap, in ``_LAP_COLUMNS`` order."""
    service = _utf8(lap.service_name or "unknown_service")
    command = _utf8(lap.command)
    return (lap.trace_id, lap.span_id, service, command, operation(service, command), lap.start_ns,
            lap.lap_ms, lap.status, lap.error, lap.customer, lap.tier, float(lap.cost),
            _dumps(dict(lap.sectors)), _dumps(list(lap.critical_path)), label)


def db_option() -> Callable[[F], F]:
    """The ``--db`` option every insights command takes (SPEC.md Part 2)."""
    return click.option("--db", "db", default=DEFAULT_DB, show_default=True, type=click.Path(dir_okay=False),
                        help="The insights store (DuckDB file).")


def parse_time(text: str) -> int:
    """ISO 8601 (``2026-11-22T10:00:00Z``, a date alone is midnight UTC) to ns since the epoch."""
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time (e.g. 2026-11-22T10:00:00Z)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1e9)


def window_options(fn: F) -> F:
    """``--since`` / ``--until`` (ISO 8601): every command looks at all data unless they narrow it."""
    fn = click.option("--until", "until", default=None, help="Only spans starting before (ISO 8601).")(fn)
    return click.option("--since", "since", default=None,
                        help="Only spans starting at or after (ISO 8601).")(fn)


def window_sql(since: str | None, until: str | None, column: str = "start_ns") -> tuple[str, list[int]]:
    """A SQL condition (``TRUE`` when open) and its parameters for the ``--since``/``--until`` window."""
    parts: list[str] = []
    params: list[int] = []
    if since:
        parts.append(f"{column} >= ?")
        params.append(parse_time(since))
    if until:
        parts.append(f"{column} < ?")
        params.append(parse_time(until))
    return (" AND ".join(parts) or "TRUE"), params


def prod_scope(since: str | None = None, until: str | None = None) -> tuple[str, list[Any]]:
    """The rows detectors read: production spans (``label = 'prod'``) inside the window."""
    where, params = window_sql(since, until)
    return f"label = 'prod' AND {where}", params
