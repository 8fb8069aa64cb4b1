"""Static checks of the shipped Grafana dashboards (no peers needed).

That every expression returns data is checked against a real Prometheus in test_peers_smoke.py.
"""

from __future__ import annotations

import json
import re

import promql
import pytest
import yaml
from peers import COLLECTOR_CONFIG_DIR

DASHBOARDS = promql.dashboard_files()


def test_dashboards_exist() -> None:
    assert [p.name for p in DASHBOARDS] == ["chronograph.json"] or DASHBOARDS


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.name for p in DASHBOARDS])
def test_dashboard_structure(path) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(path.read_text())
    variables = {v["name"]: v for v in doc["templating"]["list"]}
    assert {"service", "command"} <= set(variables)
    for name in ("service", "command"):
        assert variables[name]["includeAll"] and variables[name]["allValue"] == ".*"
    panels = [p for p in doc["panels"] if p["type"] != "row"]
    titles = " | ".join(p["title"] for p in panels).lower()
    for needle in (
        "p50",
        "sector",
        "status",
        "per second",
        "cost",
        "heatmap",
        "pending",
        "evicted",
        "outbox",
    ):
        assert needle in titles, f"no panel about {needle!r}: {titles}"
    assert any(p["type"] == "heatmap" for p in panels)
    links = [p for p in panels if p["fieldConfig"]["defaults"].get("links")]
    assert len(links) >= 3, "panels should link to Jaeger traces"
    for p in links:
        for link in p["fieldConfig"]["defaults"]["links"]:
            assert link["url"].startswith("${jaeger_url}/search?"), link
    for p in panels:
        assert p.get("targets"), f"panel {p['title']} has no query"
        ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"


def test_every_expression_substitutes() -> None:
    queries = promql.dashboard_queries(
        substitutions=promql.Substitutions(service=["svc.a"], command=["faf score"])
    )
    assert len(queries) >= 10
    for q in queries:
        assert "$" not in q.expr and "[[" not in q.expr, q
    chronograph = [q for q in queries if "chronograph_" in q.expr]
    assert all('service_name=~"svc\\\\.a"' in q.expr for q in chronograph), chronograph


def test_substitute_forms() -> None:
    subs = promql.Substitutions(service=["a", "b"], rate_interval="30s", range="2m")
    assert promql.substitute('x{s=~"$service"}[$__rate_interval]', subs) == 'x{s=~"(a|b)"}[30s]'
    assert (
        promql.substitute("${service:regex} [[service]] $__range_ms $__range", subs)
        == "(a|b) (a|b) 120000 2m"
    )
    with pytest.raises(KeyError):
        promql.substitute("$nope", subs)


def test_has_data() -> None:
    assert promql.has_data({"resultType": "vector", "result": [{"metric": {}, "value": [1, "2"]}]})
    assert not promql.has_data({"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]})
    assert promql.has_data(
        {"resultType": "vector", "result": [{"metric": {}, "value": [1, "NaN"]}]}, finite=False
    )
    assert not promql.has_data({"resultType": "vector", "result": []})


@pytest.mark.parametrize("path", sorted(COLLECTOR_CONFIG_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_collector_endpoints_overridable_and_local_by_default(path) -> None:  # type: ignore[no-untyped-def]
    text = path.read_text()
    doc = yaml.safe_load(text)
    endpoints = re.findall(r"endpoint:\s*(\S+)", text)
    assert endpoints
    for ep in endpoints:
        m = re.fullmatch(r"\$\{env:(\w+):-([^}]*)\}", ep)
        assert m, f"{path.name}: endpoint {ep} is not ${{env:VAR:-default}}"
        assert m.group(2).startswith("127.0.0.1:"), f"{path.name}: default {ep} does not bind 127.0.0.1"
    assert doc["service"]["pipelines"]
