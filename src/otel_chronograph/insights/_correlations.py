"""Error and slowness correlation: which attribute values are over-represented in failing or slow traces.

Honeycomb's BubbleUp and Tempo's ``compare()`` rank values by the difference of their share inside a
selection and outside it, with no test, so a value seen in three traces can top the list. Here every
attribute value (span and resource attributes of any span of the trace, and ``service.name``) seen in
at least ``min_support`` traces gets a 2x2 G-test (log-likelihood ratio, 1 degree of freedom):
selected traces with / without the value against the other traces with / without it. P-values are
corrected for the number of values tested with Benjamini-Hochberg; a value is reported when its
share in the selection is higher than outside it and its q-value is below ``alpha``. Pairs of the
strongest values (two different keys) are tested the same way and reported when they are more
specific than both of their parts (a higher lift). Items are ranked by the G statistic (p-values
underflow to 0 for strong effects; G keeps their order).

A trace is *failing* when any of its spans has status ERROR, *slow* when its entry span (its first
span whose parent is absent or remote) takes at least the p95 of its operation's entry spans.
Keys that restate the outcome (status codes, exception fields) are excluded by default: they always
correlate with errors and explain nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from ._output import emit
from ._store import db_option, open_store, prod_scope, window_options

if TYPE_CHECKING:
    import duckdb
    import numpy as np

__all__ = ["DEFAULT_EXCLUDE", "correlations_command", "find_correlations"]

#: glob patterns (``*`` only) of keys that restate the outcome
DEFAULT_EXCLUDE = ("http.response.status_code", "http.status_code", "rpc.grpc.status_code",
                   "rpc.status_code", "otel.status_code", "otel.status_description", "error", "error.*",
                   "exception.*", "chronograph.status", "chronograph.error*", "telemetry.sdk.*")
_MAX_VALUE = 200  # characters of a value kept (a SQL statement is not a useful category)
_PAIR_SEEDS = 12  # strongest values per target whose pairs are tested

_TRACES = """
CREATE OR REPLACE TEMP TABLE chrono_traces AS
WITH s AS (SELECT trace_id, operation, duration_ms, error, parent_remote, start_ns
           FROM spans WHERE {where}),
entry AS (SELECT trace_id, arg_min(operation, start_ns) AS op, arg_min(duration_ms, start_ns) AS ms
          FROM s WHERE parent_remote GROUP BY trace_id),
limits AS (SELECT op, quantile_cont(ms, 0.95) AS p95, count(*) AS n FROM entry GROUP BY op)
SELECT f.trace_id, f.failed, coalesce(e.ms >= l.p95 AND l.n >= ?, false) AS slow
FROM (SELECT trace_id, bool_or(error) AS failed FROM s GROUP BY trace_id) f
LEFT JOIN entry e USING (trace_id) LEFT JOIN limits l ON l.op = e.op
"""

_VALUES = """
CREATE OR REPLACE TEMP TABLE chrono_kv AS
WITH kv AS (
    SELECT trace_id, unnest(map_entries(CAST(attributes AS MAP(VARCHAR, VARCHAR)))) AS e
    FROM spans WHERE {where}
    UNION ALL
    SELECT trace_id, unnest(map_entries(CAST(resource AS MAP(VARCHAR, VARCHAR)))) AS e
    FROM spans WHERE {where}
    UNION ALL
    SELECT trace_id, {{'key': 'service.name', 'value': service}} AS e FROM spans WHERE {where})
SELECT DISTINCT trace_id, e.key AS key, left(e.value, {max_value}) AS value
FROM kv WHERE e.value IS NOT NULL AND NOT ({excluded})
"""

_COUNTS = """
SELECT key, value, count(*) AS n, count(*) FILTER (WHERE t.failed) AS failed,
       count(*) FILTER (WHERE t.slow) AS slow
FROM chrono_kv JOIN chrono_traces t USING (trace_id)
GROUP BY key, value HAVING count(*) >= ? AND count(*) < ?
"""


def _excluded_sql(patterns: Sequence[str]) -> tuple[str, list[str]]:
    if not patterns:
        return "FALSE", []
    like = [p.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").replace("*", "%")
            for p in patterns]
    return " OR ".join(["e.key LIKE ? ESCAPE '\\'"] * len(like)), like


def _g_test(a: np.ndarray, n: np.ndarray, selected: int, total: int) -> tuple[np.ndarray, np.ndarray]:
    """G statistic and p-value of each 2x2 table (value present/absent x selected/rest)."""
    import numpy as np
    from scipy.stats import chi2

    observed = np.stack([a, selected - a, n - a, total - selected - (n - a)]).astype(float)
    rows = np.stack([np.full_like(a, selected), np.full_like(a, selected),
                     np.full_like(a, total - selected), np.full_like(a, total - selected)]).astype(float)
    cols = np.stack([n, total - n, n, total - n]).astype(float)
    expected = rows * cols / total
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(observed > 0, observed * np.log(observed / expected), 0.0)
    g = np.maximum(2.0 * terms.sum(axis=0), 0.0)
    return g, chi2.sf(g, 1)


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (step-up, monotone)."""
    import numpy as np

    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return out


def find_correlations(conn: duckdb.DuckDBPyConnection, where: str = "label = 'prod'",
                      params: Sequence[Any] = (), *, min_support: int = 30, alpha: float = 0.01,
                      exclude: Sequence[str] = DEFAULT_EXCLUDE, min_entry_spans: int = 20
                      ) -> list[dict[str, Any]]:
    """Over-represented attribute values (and pairs) in failing and in slow traces, strongest first."""

    excluded, like = _excluded_sql(exclude)
    conn.execute(_TRACES.format(where=where), [*params, min_entry_spans])
    conn.execute(_VALUES.format(where=where, excluded=excluded, max_value=_MAX_VALUE),
                 [*params, *params, *params, *like])
    try:
        total, failed, slow = conn.execute("SELECT count(*), count(*) FILTER (WHERE failed), "
                                           "count(*) FILTER (WHERE slow) FROM chrono_traces").fetchall()[0]
        if not total:
            return []
        singles = conn.execute(_COUNTS, [min_support, total]).fetchall()
        out: list[dict[str, Any]] = []
        for target, selected, column in (("error", failed, 3), ("slow", slow, 4)):
            if not selected or selected == total or not singles:
                continue
            tested = [({row[0]: row[1]}, row[2], row[column]) for row in singles]
            found = [f for f in _judge(target, tested, selected, total) if f["q_value"] < alpha]
            # pairs of the strongest values, significant alone or not (an interaction hides in its parts)
            seeds = _judge(target, tested, selected, total)[:_PAIR_SEEDS]
            counts = {next(iter(t[0].items())): (t[1], t[2]) for t in tested}
            found += _interactions(target, _pairs(conn, seeds, target, min_support), counts, alpha,
                                   selected, total)
            found.sort(key=lambda f: -f["g"])
            out.extend(found)
        return out
    finally:
        conn.execute("DROP TABLE IF EXISTS chrono_traces")
        conn.execute("DROP TABLE IF EXISTS chrono_kv")


def _judge(target: str, tested: list[tuple[dict[str, str], int, int]], selected: int, total: int
           ) -> list[dict[str, Any]]:
    """Every over-represented value (q-values over all ``tested``), strongest first."""
    import numpy as np

    n = np.array([t[1] for t in tested], dtype=np.int64)
    a = np.array([t[2] for t in tested], dtype=np.int64)
    g, p = _g_test(a, n, selected, total)
    q = _bh(p)
    share_in = a / selected
    share_out = (n - a) / (total - selected)
    found = []
    for i in np.argsort(-g, kind="stable"):
        if share_in[i] > share_out[i]:
            lift = float(share_in[i] / share_out[i]) if share_out[i] > 0 else float("inf")
            found.append({"target": target, "attributes": tested[i][0], "traces": int(n[i]),
                          "selected": int(a[i]), "share_selected": float(share_in[i]),
                          "share_rest": float(share_out[i]), "lift": lift, "g": float(g[i]),
                          "p_value": float(p[i]), "q_value": float(q[i])})
    return found


def _interactions(target: str, pairs: list[tuple[dict[str, str], int, int]],
                  counts: dict[tuple[str, str], tuple[int, int]], alpha: float, selected: int, total: int
                  ) -> list[dict[str, Any]]:
    """Pairs that explain more than either part: within the traces holding one value, the other must
    still be over-represented (both ways). The weaker of the two conditional tests gives the p-value
    (q-values over the pairs tested); shares, lift and G are against all traces, like the singles'."""
    import numpy as np

    if not pairs:
        return []
    stats: list[dict[str, Any]] = []
    for attrs, n, a in pairs:
        inside = [_judge(target, [(attrs, n, a)], a_part, n_part) if 0 < a_part < n_part else []
                  for n_part, a_part in (counts[item] for item in attrs.items())]
        overall = _judge(target, [(attrs, n, a)], selected, total)
        if overall and all(inside):  # over-represented inside each part and overall
            stats.append({**overall[0], "p_value": max(j[0]["p_value"] for j in inside)})
    if not stats:
        return []
    q = _bh(np.array([s["p_value"] for s in stats]))
    out = []
    for item, qv in zip(stats, q, strict=True):
        if qv < alpha:
            out.append({**item, "q_value": float(qv)})
    return out


def _pairs(conn: duckdb.DuckDBPyConnection, seeds: list[dict[str, Any]], target: str,
           min_support: int) -> list[tuple[dict[str, str], int, int]]:
    """Counts for pairs of seed values with different keys, in traces holding both."""
    if len(seeds) < 2:
        return []
    items = [next(iter(s["attributes"].items())) for s in seeds]
    candidates = [(a, b) for a, b in itertools.combinations(items, 2) if a[0] != b[0]]
    if not candidates:
        return []
    flag = "failed" if target == "error" else "slow"
    values = ", ".join(["(?, ?)"] * len(items))
    rows = conn.execute(f"""
        WITH seeds(key, value) AS (VALUES {values}),
        kv AS (SELECT trace_id, key, value FROM chrono_kv JOIN seeds USING (key, value))
        SELECT x.key, x.value, y.key, y.value, count(*), count(*) FILTER (WHERE t.{flag})
        FROM kv x JOIN kv y ON x.trace_id = y.trace_id AND x.key < y.key
        JOIN chrono_traces t ON t.trace_id = x.trace_id
        GROUP BY ALL HAVING count(*) >= ?""", [*itertools.chain.from_iterable(items), min_support]).fetchall()
    return [({k1: v1, k2: v2}, n, a) for k1, v1, k2, v2, n, a in rows]


@click.command("correlations")
@db_option()
@window_options
@click.option("--min-support", default=30, show_default=True, type=click.IntRange(1),
              help="Only attribute values seen in at least this many traces.")
@click.option("--alpha", default=0.01, show_default=True, type=click.FloatRange(0, 1, min_open=True),
              help="False discovery rate (Benjamini-Hochberg q-value) below which a value is reported.")
@click.option("--exclude", multiple=True, metavar="KEY",
              help="Also ignore these attribute keys (glob with *); status-like keys are always ignored.")
@click.option("--json", "as_json", is_flag=True, help="JSON items instead of a table.")
def correlations_command(db: str, since: str | None, until: str | None, min_support: int, alpha: float,
                         exclude: tuple[str, ...], as_json: bool) -> None:
    """Attribute values over-represented in failing or slow traces (G-test, Benjamini-Hochberg)."""
    where, params = prod_scope(since, until)
    with open_store(db, read_only=True) as conn:
        items = find_correlations(conn, where, params, min_support=min_support, alpha=alpha,
                                  exclude=(*DEFAULT_EXCLUDE, *exclude))
    rows = [{**item, "attributes": ", ".join(f"{k}={v}" for k, v in item["attributes"].items())}
            for item in items]
    emit(items if as_json else rows, as_json,
         ("target", "attributes", "traces", "selected", "share_selected", "share_rest", "lift", "q_value"),
         empty="no attribute value is over-represented in failing or slow traces")
