"""Per-operation baselines: the figures ``monitor``, ``gen-tests`` and the report start from.

Quantiles are DuckDB's exact ``quantile_cont`` over the window; an operation needs ``min_count`` spans
before its figures mean anything (fewer and a p99 is just the maximum of a handful of spans).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    import duckdb

__all__ = ["baselines", "budget_options"]

F = TypeVar("F", bound=Callable[..., Any])


def budget_options(margin_help: str) -> Callable[[F], F]:
    """``--margin`` and ``--min-count``: how far above the learnt p99 a budget sits, and how much
    traffic an operation needs before it gets one (``gen-tests`` and ``monitor`` alike)."""
    def wrap(fn: F) -> F:
        fn = click.option("--min-count", default=20, show_default=True, type=click.IntRange(min=1),
                          help="Only operations with at least this many production spans.")(fn)
        return click.option("--margin", default=1.5, show_default=True, type=click.FloatRange(min=1.0),
                            help=margin_help)(fn)
    return wrap


def baselines(conn: duckdb.DuckDBPyConnection, where: str = "label = 'prod'",
              params: Sequence[Any] = (), min_count: int = 1) -> list[dict[str, Any]]:
    """One item per operation: count, error rate, p50/p95/p99/max (ms), first/last start (ns), rate.

    Sorted by operation. ``rate_per_s`` is the count over the operation's own time span (≥ 1 s).
    """
    rows = conn.execute(f"""
        SELECT operation, any_value(service), any_value(name), count(*), avg(error::INT),
               quantile_cont(duration_ms, [0.5, 0.95, 0.99]), max(duration_ms),
               min(start_ns), max(start_ns)
        FROM spans WHERE {where}
        GROUP BY operation HAVING count(*) >= ? ORDER BY operation""", [*params, min_count]).fetchall()
    out = []
    for op, service, name, count, err, (p50, p95, p99), top, first, last in rows:
        seconds = max((last - first) / 1e9, 1.0)
        out.append({"operation": op, "service": service, "span_name": name, "count": count,
                    "error_rate": float(err), "p50_ms": p50, "p95_ms": p95, "p99_ms": p99,
                    "max_ms": top, "first_ns": first, "last_ns": last, "rate_per_s": count / seconds})
    return out
