"""The PromQL of the shipped Grafana dashboards, made runnable against a plain Prometheus.

Grafana expands variables before it sends a query; Prometheus' HTTP API does not. This module
extracts every ``expr`` of every panel (rows included) from the dashboard JSON files under
``deploy/grafana/dashboards/`` and substitutes:

* dashboard variables — ``$service``, ``${service}``, ``${service:regex}``, ``[[service]]`` and
  the same for ``$command`` — with a regex (default ``.*``, i.e. Grafana's "All"; concrete values
  are regex-escaped and joined with ``|``, as Grafana does for multi-value variables);
* Grafana's built-ins — ``$__rate_interval``, ``$__interval``, ``$__interval_ms``, ``$__range``,
  ``$__range_s``, ``$__range_ms`` — with durations suitable for a short test run.

Choose the windows for the run: with a 1 s scrape interval, ``rate(x[$__rate_interval])`` needs
two samples of ``x`` inside the window, so ``rate_interval`` must cover the time over which laps
were recorded (default 1m), and the query time must be within that window after the last lap.

    for q in dashboard_queries(substitutions=Substitutions(service=["chronograph-demo"])):
        data = prometheus.query(q.expr)         # tests/e2e/peers.py
        assert has_data(data), q

Run it by hand against a Prometheus: ``python tests/e2e/promql.py http://127.0.0.1:9090``.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD_DIR = REPO_ROOT / "deploy" / "grafana" / "dashboards"


@dataclass(frozen=True)
class Substitutions:
    """Concrete values for the variables used in dashboard expressions."""

    service: Sequence[str] | None = None  # None = All (".*")
    command: Sequence[str] | None = None
    rate_interval: str = "1m"
    interval: str = "5s"
    range: str = "5m"
    extra: Mapping[str, str] = field(default_factory=dict)  # other variables: name -> replacement

    def variables(self) -> dict[str, str]:
        values = {
            "service": _regex(self.service),
            "command": _regex(self.command),
            "__rate_interval": self.rate_interval,
            "__interval": self.interval,
            "__interval_ms": str(_duration_ms(self.interval)),
            "__range": self.range,
            "__range_s": str(_duration_ms(self.range) // 1000),
            "__range_ms": str(_duration_ms(self.range)),
        }
        values.update(self.extra)
        return values


@dataclass(frozen=True)
class DashboardQuery:
    dashboard: str
    panel: str
    ref_id: str
    raw: str  # as written in the dashboard
    expr: str  # variables substituted: ready for Prometheus

    def __str__(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}: {self.expr}"


def _regex(values: Sequence[str] | None) -> str:
    if not values:
        return ".*"
    escaped = [re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\\\1", v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


_UNITS_MS = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": 86_400_000,
    "w": 604_800_000,
    "y": 31_536_000_000,
}


def _duration_ms(duration: str) -> int:
    total = 0
    parts = re.findall(r"(\d+)(ms|s|m|h|d|w|y)", duration)
    if not parts or "".join(n + u for n, u in parts) != duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    for number, unit in parts:
        total += int(number) * _UNITS_MS[unit]
    return total


# $name, ${name}, ${name:format}, [[name]]  (longest names first so $__range_ms beats $__range)
_VAR = re.compile(r"\$\{(?P<b>\w+)(?::\w+)?\}|\[\[(?P<o>\w+)(?::\w+)?\]\]|\$(?P<p>\w+)")


def substitute(expr: str, subs: Substitutions | None = None) -> str:
    """Replace Grafana variables in ``expr``; an unknown variable raises ``KeyError``."""
    values = (subs or Substitutions()).variables()

    def repl(m: re.Match[str]) -> str:
        name = m.group("b") or m.group("o") or m.group("p")
        if name not in values:
            raise KeyError(f"no substitution for Grafana variable ${name} in {expr!r}")
        return values[name]

    return _VAR.sub(repl, expr)


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])  # collapsed rows keep their panels inside


def dashboard_files(directory: Path = DASHBOARD_DIR) -> list[Path]:
    return sorted(directory.glob("*.json"))


def dashboard_queries(
    files: Sequence[Path] | None = None, substitutions: Substitutions | None = None
) -> list[DashboardQuery]:
    """Every PromQL ``expr`` of every panel in ``files`` (default: all shipped dashboards)."""
    queries = []
    for path in files if files is not None else dashboard_files():
        dashboard = json.loads(Path(path).read_text())
        for panel in _panels(dashboard.get("panels") or []):
            for target in panel.get("targets") or []:
                raw = target.get("expr")
                if not raw or target.get("hide"):
                    continue
                queries.append(
                    DashboardQuery(
                        dashboard=dashboard.get("title") or Path(path).stem,
                        panel=panel.get("title") or f"panel {panel.get('id')}",
                        ref_id=target.get("refId") or "?",
                        raw=raw,
                        expr=substitute(raw, substitutions),
                    )
                )
    return queries


def variable_queries(
    files: Sequence[Path] | None = None, substitutions: Substitutions | None = None
) -> list[str]:
    """The template variables' ``label_values(selector, label)`` turned into PromQL selectors.

    (``label_values(metric{...}, label)`` has data when ``metric{...}`` has; Grafana runs it
    through the series API, which this turns into an instant query of the selector.)
    """
    out = []
    for path in files if files is not None else dashboard_files():
        dashboard = json.loads(Path(path).read_text())
        for var in (dashboard.get("templating") or {}).get("list") or []:
            if var.get("type") != "query":
                continue
            query = var.get("query")
            text = query.get("query") if isinstance(query, dict) else query
            m = re.fullmatch(r"\s*label_values\((?P<sel>.+),\s*(?P<label>\w+)\)\s*", text or "")
            if m:
                out.append(substitute(m.group("sel"), substitutions))
    return out


def has_data(data: Mapping[str, Any], finite: bool = True) -> bool:
    """True when a Prometheus query ``data`` holds a sample (a finite one unless ``finite=False``)."""
    result_type = data.get("resultType")
    result = data.get("result")
    values: list[str] = []
    if result_type == "scalar" or result_type == "string":
        values = [result[1]] if result else []
    elif result_type == "vector":
        values = [s["value"][1] for s in result or []]
    elif result_type == "matrix":
        values = [v[1] for s in result or [] for v in s.get("values", [])]
    if not finite:
        return bool(values)
    return any(math.isfinite(float(v)) for v in values)


def main(argv: list[str]) -> int:
    import urllib.parse
    import urllib.request

    url = argv[1] if len(argv) > 1 else "http://127.0.0.1:9090"
    failed = 0
    for q in dashboard_queries():
        with urllib.request.urlopen(
            f"{url}/api/v1/query?{urllib.parse.urlencode({'query': q.expr})}"
        ) as resp:
            data = json.load(resp)["data"]
        ok = has_data(data)
        failed += not ok
        print(f"{'ok  ' if ok else 'NONE'} {q}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
