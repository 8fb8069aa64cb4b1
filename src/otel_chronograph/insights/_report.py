"""``report --html FILE [--json FILE]``: every insight on one self-contained page, and the same as JSON.

``build_report`` gathers the sections (each a dict; SPEC.md Part 2, "report"): ``summary``,
``heatmap`` (p95 per operation and time bucket, at most ``MAX_COLUMNS`` buckets of a round size),
``slowest`` (``_baselines``, highest p95 first), ``waterfalls`` (chosen traces with their critical
path, ``_waterfall``), ``dependencies`` (parent -> child spans that cross services), ``correlations``,
``anomalies``, ``regressions``, ``flows``, ``coverage``, ``mutations`` and ``laps``. Detectors are
imported when the report runs: a detector module missing from this install gives its section
``{"unavailable": reason}`` instead of failing the page; a section whose input was not given
(``--flows``, ``--handlers``, ``--key``) gives ``{"disabled": how to enable it}``. Every figure is
one grouped DuckDB query over the window, so a store of 1M spans reports in seconds.
"""

from __future__ import annotations

import importlib
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..sources._files import MalformedInput
from ._store import db_option, open_store, prod_scope, window_options

if TYPE_CHECKING:
    import duckdb

__all__ = ["MAX_COLUMNS", "SECTIONS", "build_report", "choose_bucket", "report_command"]

#: Section ids, page order (the HTML gives each element this id).
SECTIONS = ("summary", "heatmap", "slowest", "waterfalls", "dependencies", "correlations", "anomalies",
            "regressions", "flows", "coverage", "mutations", "laps")
MAX_COLUMNS = 48       # heatmap time buckets at most
HEATMAP_ROWS = 30      # operations in the heatmap (most total time first)
SLOWEST_ROWS = 25      # operations in the slowest table
DEFAULT_TRACES = 3     # slowest traces of the top operations, and as many top anomalies' traces
MAX_WATERFALLS = 8     # traces drawn at most (``--trace`` included)
MAX_ITEMS = 50         # anomalies, regressions, correlations listed (all are counted)
MAX_EDGES = 40         # operation -> operation edges listed
#: Round bucket sizes (seconds) the heatmap chooses from: the smallest giving <= MAX_COLUMNS columns.
_BUCKETS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
            172800, 604800, 1209600, 2419200)


def iso(ns: int | None) -> str | None:
    """ns since the epoch as ISO 8601 UTC (seconds, ``Z``)."""
    if ns is None:
        return None
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def choose_bucket(first_ns: int, last_ns: int, max_columns: int = MAX_COLUMNS) -> tuple[int, int]:
    """The smallest round bucket (seconds) whose columns, aligned to a multiple of the bucket since
    the epoch (a clock reads them), hold ``first_ns``..``last_ns`` in at most ``max_columns``; and the
    first column's start (ns)."""
    sizes = list(_BUCKETS)
    while True:
        for seconds in sizes:
            size = seconds * 10**9
            start = first_ns - first_ns % size
            if (last_ns - start) // size + 1 <= max_columns:
                return seconds, start
        sizes = [sizes[-1] * 2]  # beyond four weeks per column: keep doubling


def _summary(conn: duckdb.DuckDBPyConnection, where: str, params: Sequence[Any]) -> dict[str, Any]:
    (first, last, spans, traces, services, operations, errors, error_traces), = conn.execute(f"""
        SELECT min(start_ns), max(end_ns), count(*), count(DISTINCT trace_id), count(DISTINCT service),
               count(DISTINCT operation), count(*) FILTER (WHERE error),
               count(DISTINCT trace_id) FILTER (WHERE error)
        FROM spans WHERE {where}""", list(params)).fetchall()
    return {"from": iso(first), "to": iso(last), "from_ns": first, "to_ns": last, "spans": spans,
            "traces": traces, "services": services, "operations": operations, "error_spans": errors,
            "error_rate": errors / spans if spans else 0.0, "error_traces": error_traces,
            "trace_error_rate": error_traces / traces if traces else 0.0}


def _heatmap(conn: duckdb.DuckDBPyConnection, where: str, params: Sequence[Any],
             summary: Mapping[str, Any]) -> dict[str, Any]:
    """p95 per (operation, bucket) for the operations with the most total time."""
    first = summary["from_ns"]
    if first is None:
        return {"bucket_s": None, "buckets": [], "rows": [], "operations": 0}
    (last,), = conn.execute(f"SELECT max(start_ns) FROM spans WHERE {where}", list(params)).fetchall()
    bucket_s, start = choose_bucket(first, last)
    bucket_ns = bucket_s * 10**9
    columns = (last - start) // bucket_ns + 1
    top = conn.execute(f"""
        SELECT operation, any_value(service), any_value(name), sum(duration_ms) AS total, count(*),
               quantile_cont(duration_ms, 0.95)
        FROM spans WHERE {where} GROUP BY operation ORDER BY total DESC, operation LIMIT ?""",
        [*params, HEATMAP_ROWS]).fetchall()
    ops = [r[0] for r in top]
    cells: dict[str, list[Any]] = {op: [None] * columns for op in ops}
    counts: dict[str, list[int]] = {op: [0] * columns for op in ops}
    errors: dict[str, list[int]] = {op: [0] * columns for op in ops}
    for op, b, p95, n, e in conn.execute(f"""
            SELECT operation, (start_ns - ?) // ? AS b, quantile_cont(duration_ms, 0.95), count(*),
                   count(*) FILTER (WHERE error)
            FROM spans WHERE ({where}) AND list_contains(?::VARCHAR[], operation)
            GROUP BY operation, b""", [start, bucket_ns, *params, ops]).fetchall():
        cells[op][b], counts[op][b], errors[op][b] = float(p95), n, e
    rows = [{"operation": op, "service": service, "span_name": name, "total_ms": float(total), "count": n,
             "p95_ms": float(p95), "cells": cells[op], "counts": counts[op], "errors": errors[op]}
            for op, service, name, total, n, p95 in top]
    rows.sort(key=lambda r: (-r["p95_ms"], r["operation"]))
    (operations,), = conn.execute(f"SELECT count(DISTINCT operation) FROM spans WHERE {where}",
                                  list(params)).fetchall()
    values = [v for r in rows for v in r["cells"] if v is not None]
    return {"bucket_s": bucket_s, "start": iso(start), "start_ns": start,
            "buckets": [iso(start + i * bucket_ns) for i in range(columns)],
            "min_ms": min(values, default=None), "max_ms": max(values, default=None),
            "operations": operations, "rows": rows}


def _slowest(conn: duckdb.DuckDBPyConnection, where: str, params: Sequence[Any]) -> dict[str, Any]:
    from ._baselines import baselines

    items = baselines(conn, where, params, 1)
    items.sort(key=lambda b: (-b["p95_ms"], -b["count"], b["operation"]))
    return {"operations": len(items), "items": items[:SLOWEST_ROWS]}


def _trace_rows(conn: duckdb.DuckDBPyConnection, trace_id: str) -> list[dict[str, Any]]:
    cols = ("span_id", "parent_id", "service", "name", "kind", "start_ns", "end_ns", "error")
    return [dict(zip(cols, r, strict=True)) for r in conn.execute(
        f"SELECT {', '.join(cols)} FROM spans WHERE trace_id = ? ORDER BY start_ns, span_id",
        [trace_id]).fetchall()]


def _waterfalls(conn: duckdb.DuckDBPyConnection, where: str, params: Sequence[Any], chosen: Sequence[str],
                slowest: Mapping[str, Any], anomalies: Mapping[str, Any]) -> dict[str, Any]:
    from ._waterfall import waterfall

    picks: dict[str, str] = {}
    if chosen:
        for trace_id in chosen:
            picks.setdefault(trace_id.lower(), "chosen with --trace")
    else:
        ops = [b["operation"] for b in slowest.get("items", [])[:DEFAULT_TRACES]]
        if ops:
            found = dict(conn.execute(f"""
                SELECT operation, arg_max(trace_id, duration_ms) FROM spans
                WHERE ({where}) AND list_contains(?::VARCHAR[], operation) GROUP BY operation""",
                [*params, ops]).fetchall())
            for op in ops:
                if op in found:
                    picks.setdefault(found[op], f"slowest span of {op}")
        for a in anomalies.get("items", [])[:DEFAULT_TRACES]:
            picks.setdefault(a["trace_id"], f"anomaly: {a['operation']} took {a['duration_ms']:.1f} ms "
                                            f"(baseline {a['baseline_ms']:.1f} ms, score {a['score']:.1f})")
    items = []
    for trace_id, reason in list(picks.items())[:MAX_WATERFALLS]:
        rows = _trace_rows(conn, trace_id)
        if not rows:
            raise click.ClickException(f"--trace {trace_id}: no such trace in the store")
        item = {"trace_id": trace_id, "reason": reason, **waterfall(rows)}
        root = next((r for r in item["rows"] if r["span_id"] == item["root_span_id"]), None)
        item["root"] = f"{root['service']}: {root['name']}" if root else None
        items.append(item)
    return {"items": items}


def _dependencies(conn: duckdb.DuckDBPyConnection, where: str, params: Sequence[Any]) -> dict[str, Any]:
    """Calls between services: a child span whose parent span belongs to another service."""
    conn.execute(f"""
        CREATE OR REPLACE TEMP TABLE _report_calls AS
        WITH c AS (SELECT trace_id, parent_id, service, operation, error FROM spans
                   WHERE ({where}) AND parent_id IS NOT NULL)
        SELECT p.service AS caller, c.service AS callee, p.operation AS from_op, c.operation AS to_op,
               count(*) AS calls, count(*) FILTER (WHERE c.error) AS errors
        FROM c JOIN spans p ON p.trace_id = c.trace_id AND p.span_id = c.parent_id
        WHERE p.service <> c.service
        GROUP BY ALL""", list(params))
    try:
        edges = [{"from": a, "to": b, "calls": n, "errors": e} for a, b, n, e in conn.execute("""
            SELECT caller, callee, sum(calls)::BIGINT AS n, sum(errors)::BIGINT FROM _report_calls
            GROUP BY ALL ORDER BY n DESC, caller, callee""").fetchall()]
        ops = [{"from": a, "to": b, "calls": n, "errors": e} for a, b, n, e in conn.execute("""
            SELECT from_op, to_op, calls, errors FROM _report_calls
            ORDER BY calls DESC, from_op, to_op LIMIT ?""", [MAX_EDGES]).fetchall()]
    finally:
        conn.execute("DROP TABLE IF EXISTS _report_calls")
    nodes = [{"service": s, "spans": n, "errors": e} for s, n, e in conn.execute(f"""
        SELECT service, count(*) AS n, count(*) FILTER (WHERE error) FROM spans WHERE {where}
        GROUP BY service ORDER BY n DESC, service""", list(params)).fetchall()]
    return {"services": nodes, "edges": edges, "operation_edges": ops}


def _laps(conn: duckdb.DuckDBPyConnection, where: str, params: Sequence[Any]) -> dict[str, Any]:
    """Status counts per lap command (a store written before laps existed has no table: no rows)."""
    (tables,), = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = 'laps'"
                              ).fetchall()
    if not tables:
        return {"items": []}
    rows = conn.execute(f"""
        SELECT command, operation, any_value(service), count(*) AS n,
               count(*) FILTER (WHERE status = 'GREEN'), count(*) FILTER (WHERE status = 'YELLOW'),
               count(*) FILTER (WHERE status = 'RED'), count(*) FILTER (WHERE error),
               quantile_cont(lap_ms, [0.5, 0.95])
        FROM laps WHERE {where} GROUP BY command, operation ORDER BY n DESC, operation""",
        list(params)).fetchall()
    return {"items": [{"command": c, "operation": op, "service": svc, "count": n, "green": g, "yellow": y,
                       "red": r, "errors": e, "p50_ms": q[0], "p95_ms": q[1]}
                      for c, op, svc, n, g, y, r, e, q in rows]}


def _detector(module: str, function: str, run: Callable[[Any], Any]) -> dict[str, Any]:
    """``run(fn)`` wrapped: a detector this install lacks gives ``{"unavailable": why}``."""
    try:
        fn = getattr(importlib.import_module(f"otel_chronograph.insights.{module}"), function)
    except (ImportError, AttributeError) as exc:
        return {"unavailable": f"the {module.lstrip('_')} detector is not installed ({exc})"}
    found = run(fn)
    return {"total": len(found), "items": found[:MAX_ITEMS]} if isinstance(found, list) else found


def build_report(conn: duckdb.DuckDBPyConnection, where: str = "label = 'prod'", params: Sequence[Any] = (),
                 *, traces: Sequence[str] = (), flow_spec: Mapping[str, Sequence[str]] | None = None,
                 handlers: Sequence[str] | None = None, test_operations: Mapping[str, int] | None = None,
                 keys: Sequence[str] = ()) -> dict[str, Any]:
    """Every section of the report (module doc) for the spans ``where`` selects."""
    report: dict[str, Any] = {"generated": iso(int(datetime.now(timezone.utc).timestamp() * 1e9))}
    report["summary"] = _summary(conn, where, params)
    report["heatmap"] = _heatmap(conn, where, params, report["summary"])
    report["slowest"] = _slowest(conn, where, params)
    report["anomalies"] = _detector("_anomalies", "find_anomalies", lambda f: f(conn, where, params))
    report["waterfalls"] = _waterfalls(conn, where, params, traces, report["slowest"], report["anomalies"])
    report["dependencies"] = _dependencies(conn, where, params)
    report["correlations"] = _detector("_correlations", "find_correlations", lambda f: f(conn, where, params))
    report["regressions"] = _detector("_regressions", "find_regressions", lambda f: f(conn, where, params))
    if flow_spec is None:
        report["flows"] = {"disabled": "pass --flows FILE (YAML: flows: {\"<service>: <span name>\": "
                                       "[child span name, ...]}) to check flow conformance"}
    else:
        report["flows"] = _detector("_flows", "check_flows", lambda f: {"items": f(conn, flow_spec, where,
                                                                                     params)})
    if handlers is None:
        report["coverage"] = {"disabled": "pass --handlers FILE (one '<service>: <span name>' per line) "
                                          "and optionally --tests PATH... to report coverage"}
    else:
        report["coverage"] = _detector("_coverage", "coverage",
                                       lambda f: f(conn, handlers, test_operations, where, params))
    if not keys:
        report["mutations"] = {"disabled": "pass --key K (repeatable: a span attribute, event attribute "
                                           "or event name) to track which operations write it"}
    else:
        report["mutations"] = _detector("_mutations", "find_mutations",
                                        lambda f: {"items": f(conn, keys, where, params)})
    report["laps"] = _laps(conn, where, params)
    return {k: report[k] for k in ("generated", *SECTIONS)}


def _finite(value: Any) -> Any:
    """``value`` with every infinite or NaN float as ``None``: strict JSON (a lift is infinite when a
    value is never seen outside the selection) that any parser reads."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _write(path: str, text: str, what: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write the {what}: {exc.strerror or exc}") from None


@click.command("report")
@click.option("--html", "html_path", required=True, type=click.Path(dir_okay=False),
              help="Write the self-contained HTML page here.")
@click.option("--json", "json_path", default=None, type=click.Path(dir_okay=False),
              help="Also write the same content as JSON here.")
@click.option("--trace", "traces", multiple=True, metavar="ID",
              help="Draw this trace's waterfall (repeatable; default: the slowest traces of the top "
                   "operations and the top anomalies' traces).")
@click.option("--flows", "flows_path", default=None, type=click.Path(dir_okay=False),
              help="Flow spec (YAML) for the flow conformance section.")
@click.option("--handlers", "handlers_path", default=None, type=click.Path(dir_okay=False),
              help="Declared handlers (one operation per line) for the coverage section.")
@click.option("--tests", "tests_paths", multiple=True, type=click.Path(dir_okay=False),
              help="OTLP files a test run exported, for coverage (repeatable; needs --handlers).")
@click.option("--key", "keys", multiple=True, help="State key for the mutations section (repeatable).")
@db_option()
@window_options
def report_command(html_path: str, json_path: str | None, traces: tuple[str, ...], flows_path: str | None,
                   handlers_path: str | None, tests_paths: tuple[str, ...], keys: tuple[str, ...], db: str,
                   since: str | None, until: str | None) -> None:
    """One self-contained HTML page with every insight (and --json the same content)."""
    from ._flows import load_flow_spec
    from ._report_html import render

    if tests_paths and handlers_path is None:
        raise click.UsageError("--tests needs --handlers (the declared operations to cover)")
    spec = load_flow_spec(flows_path) if flows_path is not None else None
    handlers = test_ops = None
    on_error = MalformedInput()
    if handlers_path is not None:
        from ._coverage import count_operations, read_handlers

        handlers = read_handlers(handlers_path)


        test_ops = count_operations(tests_paths, on_error) if tests_paths else None
    where, params = prod_scope(since, until)
    with open_store(db, read_only=True) as conn:
        report = build_report(conn, where, params, traces=traces, flow_spec=spec, handlers=handlers,
                              test_operations=test_ops, keys=keys)
    _write(html_path, render(report), "report")
    if json_path is not None:
        _write(json_path, json.dumps(_finite(report), indent=2, default=str, allow_nan=False) + "\n",
               "JSON report")
    s = report["summary"]
    click.echo(f"{html_path}: {s['spans']} spans, {s['traces']} traces, {s['services']} services, "
               f"{len(report['waterfalls']['items'])} waterfalls", err=True)
    if on_error.count:
        click.echo(f"chronograph insights report: {on_error.count} malformed test input(s)", err=True)
        sys.exit(2)
