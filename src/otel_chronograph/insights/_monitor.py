"""``insights monitor``: Prometheus alerting rules and a Grafana dashboard from the learned baselines.

The rules watch the metrics the Collector's ``spanmetrics`` connector derives from every span
(collector-config/gateway.yaml: namespace ``traces.span.metrics``, a millisecond histogram), as
Prometheus names them: ``traces_span_metrics_duration_milliseconds_bucket`` and
``traces_span_metrics_calls_total``, labelled ``service_name``, ``span_name`` and ``status_code``.
Per operation with ``--min-count`` production spans: a latency alert when the p99 over
``--rate-window`` stays above production p99 × ``--margin`` for ``--for``, and an error-rate alert
when the share of error calls stays above max(error rate × margin, ``--min-error-rate``). Per lap
command (the ``laps`` table) with as many laps: a lap-time alert on chronograph's own
``chronograph_lap_duration_milliseconds_bucket`` (labels ``service_name``, ``chronograph_command``).

Names come from untrusted telemetry and only ever appear inside PromQL string literals, escaped the
way the PromQL lexer unquotes them; alert labels and annotations hold no name (both are Go templates:
annotations read ``$labels``, which the expressions keep by grouping on the name labels, and a label
``chronograph_operation_id``, a hash of the operation, tells the rules apart).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from ._baselines import budget_options
from ._output import emit
from ._store import db_option, open_store, prod_scope, window_options

__all__ = ["dashboard", "monitor_command", "promql_string", "rules", "thresholds"]

_DURATION = re.compile(r"^((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?$")
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_GROUP_BY = "service_name, span_name"


def promql_string(text: str) -> str:
    """``text`` as a double-quoted PromQL string literal (Go escapes; a lone surrogate, which no
    UTF-8 label value can hold, becomes U+FFFD)."""
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ch.isprintable() and ch != "\u2028" and ch != "\u2029":
            out.append(ch)
        elif unicodedata.category(ch) == "Cs":
            out.append("\\ufffd")
        elif ord(ch) > 0xFFFF:
            out.append(f"\\U{ord(ch):08x}")
        else:
            out.append(f"\\u{ord(ch):04x}")
    return '"' + "".join(out) + '"'


def _number(value: float) -> str:
    return repr(float(round(value, 6)))


def _selector(metric: str, service: str, span_name: str, extra: str = "") -> str:
    return (f"{metric}{{service_name={promql_string(service)}, span_name={promql_string(span_name)}"
            f"{extra}}}")


def latency_expr(namespace: str, service: str, span_name: str, window: str, quantile: float = 0.99) -> str:
    bucket = _selector(f"{namespace}_duration_milliseconds_bucket", service, span_name)
    return f"histogram_quantile({quantile}, sum by (le, {_GROUP_BY}) (rate({bucket}[{window}])))"


def error_ratio_expr(namespace: str, service: str, span_name: str, window: str) -> str:
    calls = f"{namespace}_calls_total"
    errors = _selector(calls, service, span_name, ', status_code="STATUS_CODE_ERROR"')
    every = _selector(calls, service, span_name)
    return (f"sum by ({_GROUP_BY}) (rate({errors}[{window}]))\n  / sum by ({_GROUP_BY}) "
            f"(rate({every}[{window}]))")


def thresholds(bases: Sequence[Mapping[str, Any]], margin: float, min_error_rate: float
               ) -> list[dict[str, Any]]:
    """One item per operation with a finite p99: its baseline and the alert thresholds."""
    out = []
    for b in bases:
        p99 = float(b["p99_ms"])
        if not math.isfinite(p99):
            continue
        out.append({"operation": b["operation"], "service": b["service"], "span_name": b["span_name"],
                    "count": b["count"], "p99_ms": p99, "latency_threshold_ms": round(p99 * margin, 3),
                    "error_rate": float(b["error_rate"]),
                    "error_rate_threshold": round(max(float(b["error_rate"]) * margin, min_error_rate), 6)})
    return out


def lap_thresholds(conn: Any, where: str, params: Sequence[Any], margin: float, min_count: int
                   ) -> list[dict[str, Any]]:
    """One item per lap command (``laps`` table, same window) with ``min_count`` laps: its p99 lap time
    and the alert threshold. Laps carry ``command``; their ``span_name`` is None."""
    import duckdb

    try:
        rows = conn.execute(f"""
            SELECT operation, any_value(service), any_value(command), count(*),
                   quantile_cont(lap_ms, 0.99) FROM laps WHERE {where}
            GROUP BY operation HAVING count(*) >= ? ORDER BY operation""", [*params, min_count]).fetchall()
    except duckdb.CatalogException:  # a store without a laps table
        return []
    return [{"operation": op, "service": service, "span_name": None, "command": command, "kind": "lap",
             "count": count, "p99_ms": float(p99), "latency_threshold_ms": round(float(p99) * margin, 3)}
            for op, service, command, count, p99 in rows if p99 is not None and math.isfinite(p99)]


def lap_latency_expr(metric: str, service: str, command: str, window: str) -> str:
    bucket = (f"{metric}_bucket{{service_name={promql_string(service)}, "
              f"chronograph_command={promql_string(command)}}}")
    return (f"histogram_quantile(0.99, sum by (le, service_name, chronograph_command) "
            f"(rate({bucket}[{window}])))")


def operation_id(operation: str) -> str:
    """A short stable id of an operation: a label value that is unique per rule (promtool flags two
    alerts with the same name and labels as duplicates) and safe in a Go template, unlike the name."""
    return hashlib.sha256(operation.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def rules(items: Sequence[Mapping[str, Any]], namespace: str, window: str, for_: str,
          laps: Sequence[Mapping[str, Any]] = (), lap_metric: str = "chronograph_lap_duration_milliseconds"
          ) -> dict[str, Any]:
    """The Prometheus rule file (``groups``): one latency and one error-rate alert per span operation,
    one latency alert per lap command."""
    latency: list[dict[str, Any]] = []
    errors: list[dict[str, Any]] = []
    lap_rules: list[dict[str, Any]] = []
    for it in laps:
        lap_rules.append({
            "alert": "LapTimeAboveBaseline",
            "expr": (f"{lap_latency_expr(lap_metric, it['service'], it['command'], window)}\n  > "
                     f"{_number(it['latency_threshold_ms'])}"),
            "for": for_,
            "labels": {"severity": "warning", "source": "chronograph-insights",
                       "chronograph_operation_id": operation_id("lap " + it["operation"])},
            "annotations": {
                "summary": "p99 lap time of {{ $labels.service_name }}: {{ $labels.chronograph_command }} is "
                           "{{ $value | humanize }} ms",
                "description": f"Production p99 lap time was {_number(it['p99_ms'])} ms; the alert fires "
                               f"above {_number(it['latency_threshold_ms'])} ms (p99 x margin) for {for_}.",
            },
        })
    for it in items:
        service, name = it["service"], it["span_name"]
        labels = {"severity": "warning", "source": "chronograph-insights",
                  "chronograph_operation_id": operation_id(it["operation"])}  # copied per rule: no aliases
        latency.append({
            "alert": "OperationLatencyAboveBaseline",
            "expr": (f"{latency_expr(namespace, service, name, window)}\n  > "
                     f"{_number(it['latency_threshold_ms'])}"),
            "for": for_,
            "labels": dict(labels),
            "annotations": {
                "summary": "p99 of {{ $labels.service_name }}: {{ $labels.span_name }} is "
                           "{{ $value | humanize }} ms",
                "description": f"Production p99 was {_number(it['p99_ms'])} ms; the alert fires above "
                               f"{_number(it['latency_threshold_ms'])} ms (p99 x margin) for {for_}.",
            },
        })
        errors.append({
            "alert": "OperationErrorRateAboveBaseline",
            "expr": f"(\n  {error_ratio_expr(namespace, service, name, window)}\n) > "
                    f"{_number(it['error_rate_threshold'])}",
            "for": for_,
            "labels": dict(labels),
            "annotations": {
                "summary": "error rate of {{ $labels.service_name }}: {{ $labels.span_name }} is "
                           "{{ $value | humanizePercentage }}",
                "description": f"Production error rate was {_number(it['error_rate'])}; the alert fires "
                               f"above {_number(it['error_rate_threshold'])} for {for_}.",
            },
        })
    groups = [{"name": "chronograph-insights-latency", "rules": latency},
              {"name": "chronograph-insights-errors", "rules": errors}]
    if lap_rules:
        groups.append({"name": "chronograph-insights-laps", "rules": lap_rules})
    return {"groups": groups}


def _panel(pid: int, title: str, x: int, y: int, unit: str, targets: list[dict[str, Any]]) -> dict[str, Any]:
    source = {"type": "prometheus", "uid": "${datasource}"}
    return {"id": pid, "type": "timeseries", "title": title, "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
            "datasource": source,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {"legend": {"displayMode": "list", "placement": "bottom"}},
            "targets": [{"refId": chr(ord("A") + i), "datasource": source, **t}
                        for i, t in enumerate(targets)]}


def dashboard(items: Sequence[Mapping[str, Any]], namespace: str, max_operations: int = 50,
              laps: Sequence[Mapping[str, Any]] = (),
              lap_metric: str = "chronograph_lap_duration_milliseconds") -> dict[str, Any]:
    """A Grafana dashboard: per operation (the busiest ``max_operations``) its p99 against the baseline
    and the alert threshold, and its error rate against its threshold; per lap command its p99 lap
    time the same way."""
    panels: list[dict[str, Any]] = []
    top = 8 * min(len(items), max_operations)
    for i, it in enumerate(sorted(laps, key=lambda it: (-it["count"], it["operation"]))[:max_operations]):
        panels.append(_panel(1000 + i, f"{it['operation']}: p99 lap time", 12 * (i % 2), top + 8 * (i // 2),
                             "ms", [
            {"expr": lap_latency_expr(lap_metric, it["service"], it["command"], "$__rate_interval"),
             "legendFormat": "p99"},
            {"expr": f"vector({_number(it['p99_ms'])})", "legendFormat": "production p99"},
            {"expr": f"vector({_number(it['latency_threshold_ms'])})", "legendFormat": "alert threshold"},
        ]))
    busiest = sorted(items, key=lambda it: (-it["count"], it["operation"]))[:max_operations]
    for row, it in enumerate(busiest):
        service, name = it["service"], it["span_name"]
        window = "$__rate_interval"
        y = row * 8
        panels.append(_panel(2 * row + 1, f"{it['operation']}: p99 latency", 0, y, "ms", [
            {"expr": latency_expr(namespace, service, name, window), "legendFormat": "p99"},
            {"expr": f"vector({_number(it['p99_ms'])})", "legendFormat": "production p99"},
            {"expr": f"vector({_number(it['latency_threshold_ms'])})", "legendFormat": "alert threshold"},
        ]))
        panels.append(_panel(2 * row + 2, f"{it['operation']}: error rate", 12, y, "percentunit", [
            {"expr": error_ratio_expr(namespace, service, name, window), "legendFormat": "error rate"},
            {"expr": f"vector({_number(it['error_rate'])})", "legendFormat": "production error rate"},
            {"expr": f"vector({_number(it['error_rate_threshold'])})", "legendFormat": "alert threshold"},
        ]))
    return {
        "title": "chronograph insights: operation baselines",
        "uid": "chronograph-insights-baselines",
        "tags": ["chronograph", "insights"],
        "schemaVersion": 39,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "1m",
        "templating": {"list": [{"name": "datasource", "label": "Data source", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0}]},
        "panels": panels,
    }


def _dumper() -> Any:
    import yaml

    class Dumper(yaml.SafeDumper):
        """Multi-line strings (the expressions) as ``|`` blocks; PyYAML quotes them instead when a
        block cannot hold them, so the output stays valid whatever the text."""

    def text(dumper: yaml.SafeDumper, value: str) -> Any:
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text)
    return Dumper


def _duration(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not value or not _DURATION.match(value) or value == "0s":
        raise click.BadParameter(f"{value!r} is not a Prometheus duration (e.g. 10m, 1h30m)")
    return value


def _metric_name(ctx: click.Context, param: click.Parameter, value: str) -> str:
    if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", value):
        raise click.BadParameter(f"{value!r} is not a Prometheus metric name prefix")
    return value


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise click.ClickException(f"{path}: cannot write: {exc.strerror or exc}") from None


@click.command("monitor")
@db_option()
@window_options
@click.option("--prometheus-rules", "rules_path", required=True, type=click.Path(dir_okay=False),
              help="Write the Prometheus alerting rules (YAML) here.")
@click.option("--grafana-dashboard", "dashboard_path", default=None, type=click.Path(dir_okay=False),
              help="Also write a Grafana dashboard (JSON) here.")
@budget_options("Alert above production p99 (and error rate) x margin.")
@click.option("--min-error-rate", default=0.01, show_default=True, type=click.FloatRange(0.0, 1.0),
              help="The error-rate threshold is never below this.")
@click.option("--for", "for_", default="10m", show_default=True, callback=_duration,
              help="How long a condition must hold before the alert fires.")
@click.option("--rate-window", default="5m", show_default=True, callback=_duration,
              help="The range of rate() in the rules.")
@click.option("--namespace", default="traces_span_metrics", show_default=True, callback=_metric_name,
              help="Prefix of the spanmetrics metric names in Prometheus.")
@click.option("--lap-metric", default="chronograph_lap_duration_milliseconds", show_default=True,
              callback=_metric_name, help="The lap-time histogram in Prometheus (without _bucket).")
@click.option("--json", "as_json", is_flag=True, help="Print the per-operation thresholds as JSON.")
def monitor_command(db: str, since: str | None, until: str | None, rules_path: str,
                    dashboard_path: str | None, margin: float, min_count: int, min_error_rate: float,
                    for_: str, rate_window: str, namespace: str, lap_metric: str, as_json: bool) -> None:
    """Write Prometheus alert rules (and a Grafana dashboard) from production baselines."""
    import yaml

    from ._baselines import baselines

    with open_store(db, read_only=True) as conn:
        where, params = prod_scope(since, until)
        items = thresholds(baselines(conn, where, params, min_count), margin, min_error_rate)
        laps = lap_thresholds(conn, where, params, margin, min_count)
    doc = rules(items, namespace, rate_window, for_, laps, lap_metric)
    header = ("# Generated by `chronograph insights monitor` from production baselines "
              f"(margin {_number(margin)}); check with `promtool check rules`.\n")
    _write(rules_path, header + yaml.dump(doc, Dumper=_dumper(), sort_keys=False, allow_unicode=True,
                                          width=1 << 20))
    if dashboard_path:
        board = dashboard(items, namespace, laps=laps, lap_metric=lap_metric)
        _write(dashboard_path, json.dumps(board, indent=2, ensure_ascii=False) + "\n")
    emit([*items, *laps], as_json, ("operation", "count", "p99_ms", "latency_threshold_ms", "error_rate",
                          "error_rate_threshold"),
         empty=f"no operation with {min_count} production spans: the rule groups are empty")
