"""``insights anomalies``: spans much slower than their operation usually is at that time of the week.

Method (docs/insights.md, "Anomalies"). Per operation, on ``ld = ln(duration_ms)``:

* location: the median of ``ld`` in the span's hour-of-week bucket when that bucket of the operation
  holds at least ``min_bucket`` spans, else its hour-of-day bucket, else the operation's global median.
  A busy hour that is always slow (a seasonal peak) is then normal for that hour, and a span that is
  slow for the quiet night is caught even when it would be ordinary at noon.
* scale: pooled over the operation from the residuals ``r = ld - location``: the larger of the MAD
  scale (``1.4826 * median |r|``) and the upper-tail scale ``q95(r) / 1.645``. For log-normal
  latencies the two agree; for a naturally heavy-tailed operation (cache misses, retries) the tail
  scale is larger, so its usual slow spans are not flagged. It assumes anomalies are under 5 % of an
  operation's spans. The scale never goes below ``0.02`` (2 %), so a constant-time operation does not
  flag jitter.
* score: the robust z ``r / scale``; a span is anomalous when ``score >= threshold`` (default 4).
  Only the slow side is reported: a fast span is a cache hit or an early error, and errors have
  their own correlation detector.

Operations with fewer than ``min_spans`` spans in the window are not judged (no baseline to trust).
Everything is one DuckDB query (grouped medians), so a million spans take about a second.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import click

from ._output import emit
from ._store import db_option, open_store, prod_scope, window_options

if TYPE_CHECKING:
    import duckdb

__all__ = ["anomalies_command", "find_anomalies", "iso_utc"]

#: ns since the epoch -> hour index; the epoch was a Thursday, so +72 h makes hour-of-week 0 a Monday.
HOUR_OF_WEEK_SQL = "((start_ns // 3600000000000) + 72) % 168"
HOUR_OF_DAY_SQL = "(start_ns // 3600000000000) % 24"
#: A duration of 0 (clock resolution) is read as 1 µs so its logarithm exists.
LOG_DURATION_SQL = "ln(greatest(duration_ms, 0.001))"
MIN_SCALE = 0.02
_Q95_Z = 1.6448536269514722
_MAD_K = 1.4826

COLUMNS = ("score", "operation", "duration_ms", "baseline_ms", "start", "trace_id", "span_id")


def iso_utc(ns: int) -> str:
    """ns since the epoch as ISO 8601 UTC with microseconds (``2026-11-02T10:00:00.000000Z``)."""
    when = datetime.fromtimestamp(ns // 1000 / 1e6, tz=timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def find_anomalies(conn: duckdb.DuckDBPyConnection, where: str = "label = 'prod'",
                   params: Sequence[Any] = (), threshold: float = 4.0, min_spans: int = 30,
                   min_bucket: int = 30) -> list[dict[str, Any]]:
    """Anomalously slow spans among the rows ``where`` selects, highest score first (module doc)."""
    # numbers only until the few flagged rows are known: the strings of a million spans are not
    # carried through the grouped medians (memory), they are joined back by rowid at the end
    rows = conn.execute(f"""
        WITH s AS (
            SELECT rowid AS rid, operation, {LOG_DURATION_SQL} AS ld, {HOUR_OF_WEEK_SQL} AS how,
                   {HOUR_OF_DAY_SQL} AS hod
            FROM spans WHERE {where}),
        ops AS (SELECT operation, median(ld) AS m FROM s GROUP BY operation HAVING count(*) >= ?),
        bw AS (SELECT operation, how, median(ld) AS m FROM s GROUP BY operation, how
               HAVING count(*) >= ?),
        bd AS (SELECT operation, hod, median(ld) AS m FROM s GROUP BY operation, hod
               HAVING count(*) >= ?),
        r AS (
            SELECT s.rid, s.operation, coalesce(bw.m, bd.m, ops.m) AS loc,
                   s.ld - coalesce(bw.m, bd.m, ops.m) AS res
            FROM s JOIN ops USING (operation)
            LEFT JOIN bw USING (operation, how) LEFT JOIN bd USING (operation, hod)),
        sc AS (
            SELECT operation, greatest({_MAD_K} * median(abs(res)), quantile_cont(res, 0.95) / {_Q95_Z},
                                       {MIN_SCALE}) AS scale
            FROM r GROUP BY operation),
        hit AS (SELECT r.rid, r.loc, r.res / sc.scale AS score FROM r JOIN sc USING (operation)
                WHERE r.res / sc.scale >= ?)
        SELECT trace_id, span_id, operation, service, name, duration_ms, exp(hit.loc), hit.score, start_ns
        FROM hit JOIN spans ON spans.rowid = hit.rid
        ORDER BY hit.score DESC, trace_id, span_id""",
        [*params, min_spans, min_bucket, min_bucket, threshold]).fetchall()
    return [{"trace_id": t, "span_id": s, "operation": op, "service": svc, "span_name": name,
             "duration_ms": float(d), "baseline_ms": float(b), "score": float(z), "start": iso_utc(ns)}
            for t, s, op, svc, name, d, b, z, ns in rows]


@click.command("anomalies")
@db_option()
@window_options
@click.option("--threshold", type=click.FloatRange(min=0, min_open=True), default=4.0, show_default=True,
              help="Robust z score (log latency) at or above which a span is anomalous.")
@click.option("--min-spans", type=click.IntRange(min=2), default=30, show_default=True,
              help="Operations with fewer spans in the window are not judged.")
@click.option("--json", "as_json", is_flag=True, help="Print the SPEC.md JSON list.")
def anomalies_command(db: str, since: str | None, until: str | None, threshold: float, min_spans: int,
                      as_json: bool) -> None:
    """Spans much slower than their operation's baseline for that hour of the week."""
    where, params = prod_scope(since, until)
    with open_store(db, read_only=True) as conn:
        items = find_anomalies(conn, where, params, threshold=threshold, min_spans=min_spans)
    emit(items, as_json, COLUMNS, empty="no anomalous spans")
