"""``insights monitor``: rules from the baselines that the real ``promtool`` accepts, whatever the names,
and that the real Prometheus loads; a Grafana dashboard whose every expression Prometheus parses."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import sys
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_chronograph.engine import SpanRecord
from otel_chronograph.insights._cli import insights
from otel_chronograph.insights._monitor import promql_string
from tests.insights.helpers import span, store

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import peers

NASTY = ['GET /a"b', "back\\slash", "{{ $labels.x }} {{", "new\nline", "tab\tand 'quote' \u2028 é 🙂",
         "x\"} or vector(1) # "]


def promtool() -> str:
    found = shutil.which("promtool") or ("/usr/bin/promtool" if Path("/usr/bin/promtool").exists() else None)
    if not found:
        pytest.fail("promtool is missing (Debian package prometheus; scripts/build-peers.sh installs it)",
                    pytrace=False)
    return found


def production(seed: int = 3) -> list[SpanRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(200):
        out.append(span("GET /orders/{id}", i, rng.lognormvariate(4, 0.3), service="web", error=i % 20 == 0))
        out.append(span("charge", i, rng.lognormvariate(3, 0.3), service="billing"))
        out.append(span(NASTY[i % len(NASTY)], i, rng.lognormvariate(2, 0.3), service='svc "q" \\'))
    out.append(span("rare", 0, 1, service="web"))
    return out


LAP_COMMANDS = ["faf score", 'say "hi" \\ {{ now }}']


def add_laps(conn: Any, count: int = 40) -> None:
    """Lap rows as ingest derives them: two commands of service ``cli``, lap times 100..139 ms."""
    rows = [(f"{k:016x}{i:016x}", f"{i:016x}", "cli", cmd, f"cli: {cmd}", i * 10**9, 100.0 + i, "GREEN",
             False, None, None, None, "{}", "[]", "prod")
            for k, cmd in enumerate(LAP_COMMANDS) for i in range(count)]
    conn.executemany("INSERT INTO laps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)


def monitor(tmp_path: Path, records: list[SpanRecord], *args: str, laps: bool = True
            ) -> tuple[Path, Path, Any]:
    db = tmp_path / "prod.duckdb"
    conn = store(db, records)
    if laps:
        add_laps(conn)
    conn.close()
    rules, board = tmp_path / "rules.yml", tmp_path / "dashboard.json"
    result = CliRunner().invoke(insights, ["monitor", "--db", str(db), "--prometheus-rules", str(rules),
                                           "--grafana-dashboard", str(board), "--json", *args])
    assert result.exit_code == 0, result.output
    return rules, board, json.loads(result.output)


def test_rules_follow_the_baselines(tmp_path: Path) -> None:
    rules, board, items = monitor(tmp_path, production(), "--margin", "2", "--min-count", "20")
    ops = {i["operation"]: i for i in items if i.get("kind") != "lap"}
    laps = {i["command"]: i for i in items if i.get("kind") == "lap"}
    assert len(ops) == 2 + len(NASTY)  # "rare" has 1 span
    assert set(laps) == set(LAP_COMMANDS)
    assert laps["faf score"]["p99_ms"] == pytest.approx(100 + 0.99 * 39)
    assert laps["faf score"]["latency_threshold_ms"] == pytest.approx(2 * (100 + 0.99 * 39), abs=1e-3)
    web = ops["web: GET /orders/{id}"]
    assert web["latency_threshold_ms"] == pytest.approx(2 * web["p99_ms"], abs=1e-3)
    assert web["error_rate"] == pytest.approx(0.05)
    assert web["error_rate_threshold"] == pytest.approx(0.10)
    assert ops["billing: charge"]["error_rate_threshold"] == 0.01  # the floor
    doc = yaml.safe_load(rules.read_text())
    latency, errors, lap_group = doc["groups"]
    assert len(latency["rules"]) == len(errors["rules"]) == len(ops)
    [lap_rule] = [r for r in lap_group["rules"] if 'chronograph_command="faf score"' in r["expr"]]
    assert lap_rule["expr"].startswith(
        "histogram_quantile(0.99, sum by (le, service_name, chronograph_command) (rate("
        'chronograph_lap_duration_milliseconds_bucket{service_name="cli", chronograph_command="faf score"}')
    rule = next(r for r in latency["rules"] if 'span_name="GET /orders/{id}"' in r["expr"])
    assert rule["for"] == "10m"
    assert rule["expr"].startswith(
        "histogram_quantile(0.99, sum by (le, service_name, span_name) (rate("
        'traces_span_metrics_duration_milliseconds_bucket{service_name="web", span_name="GET /orders/{id}"}'
        "[5m])))")
    assert rule["expr"].endswith(f"> {round(web['latency_threshold_ms'], 6)!r}")
    # names never reach labels or annotations (Go templates): only $labels references
    for r in latency["rules"] + errors["rules"] + lap_group["rules"]:
        assert set(r["labels"]) == {"severity", "source", "chronograph_operation_id"}
        assert all(n not in json.dumps(r["annotations"]) for n in ("svc", "GET", "charge"))
    panels = json.loads(board.read_text())["panels"]
    assert len(panels) == 2 * len(ops) + len(laps)
    assert len({p["id"] for p in panels}) == len(panels)


def test_promtool_accepts_rules_with_quotes_and_backslashes(tmp_path: Path) -> None:
    rules, _, items = monitor(tmp_path, production())
    spans = [i for i in items if i.get("kind") != "lap"]
    assert any('"' in i["span_name"] and "\\" in i["service"] for i in spans)
    out = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {2 * len(spans) + len(LAP_COMMANDS)} rules found" in out.stdout + out.stderr


def test_empty_store_gives_empty_groups_that_promtool_accepts(tmp_path: Path) -> None:
    rules, _, items = monitor(tmp_path, [], laps=False)
    assert items == []
    out = subprocess.run([promtool(), "check", "rules", str(rules)], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize("args,message", [
    (["--for", "10 minutes"], "not a Prometheus duration"),
    (["--rate-window", "0s"], "not a Prometheus duration"),
    (["--namespace", "bad-name"], "metric name prefix"),
    (["--margin", "0.9"], "--margin"),
])
def test_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(insights, ["monitor", "--db", str(tmp_path / "x.duckdb"),
                                           "--prometheus-rules", str(tmp_path / "r.yml"), *args])
    assert result.exit_code == 2 and message in result.output, result.output


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_promql_string_is_one_literal(text: str) -> None:
    literal = promql_string(text)
    assert literal.startswith('"') and literal.endswith('"')
    inner = literal[1:-1]
    # every quote and backslash inside is escaped, no raw line break: the literal cannot end early
    assert "\n" not in inner and "\r" not in inner
    i = 0
    while i < len(inner):
        if inner[i] == "\\":
            assert inner[i + 1] in 'nrt"\\uU', inner
            i += 2
        else:
            assert inner[i] != '"'
            i += 1


# -- the real Prometheus ---------------------------------------------------------------------------


def start_prometheus_with_rules(workdir: Path, rules: Path) -> peers.Prometheus:
    """Debian's Prometheus with ``rule_files`` (peers.start_prometheus writes no rule_files)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = peers.free_port()
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"evaluation_interval": "1s"}, "rule_files": [str(rules)]}))
    (workdir / "data").mkdir(exist_ok=True)
    peer = peers.Prometheus(name="prometheus", workdir=workdir, ports={"http": port}, argv=[
        str(peers.prometheus_binary()), f"--config.file={config}", f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"])
    peer.start()
    try:
        peer.wait_http_ok(f"{peer.url}/-/ready")
    except BaseException:
        peer.stop()
        raise
    return peer


@pytest.fixture()
def prometheus_with(tmp_path: Path) -> Iterator[Any]:
    started: list[peers.Prometheus] = []

    def start(rules: Path) -> peers.Prometheus:
        try:
            peer = start_prometheus_with_rules(tmp_path / "prometheus", rules)
        except peers.PeerError as exc:
            pytest.fail(str(exc), pytrace=False)
        started.append(peer)
        return peer

    yield start
    for peer in started:
        peer.stop()


@pytest.mark.e2e
def test_rules_load_into_prometheus_and_evaluate(tmp_path: Path, prometheus_with: Any) -> None:
    rules, board, items = monitor(tmp_path, production())
    prom = prometheus_with(rules)

    def evaluated() -> list[dict[str, Any]]:
        status, body = peers.http_get_json(f"{prom.url}/api/v1/rules")
        assert status == 200, body
        groups = body["data"]["groups"]
        done = all(r.get("lastEvaluation", "").startswith("20") for g in groups for r in g["rules"])
        return groups if groups and done else []

    groups = peers.wait_until(evaluated, 30, "rules evaluated", on_poll=prom.check_alive)
    names = sorted(g["name"] for g in groups)
    assert names == [f"chronograph-insights-{n}" for n in ("errors", "laps", "latency")]
    spans = [i for i in items if i.get("kind") != "lap"]
    for group in groups:
        assert len(group["rules"]) == (len(LAP_COMMANDS) if group["name"].endswith("laps") else len(spans))
        for rule in group["rules"]:
            assert rule["health"] == "ok", rule
            assert rule["state"] == "inactive"  # no data yet: nothing fires
    # the real PromQL parser reads every escaped name back exactly (and 100 random strings)
    rng = random.Random(11)
    alphabet = '"\\\n\r\t\x00\x07\x1b\x7f\x85 $`{}\'aé\u2028\u2029\u200e\ufeff\U0001f642\U0010fffd'
    randoms = ["".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))) for _ in range(100)]
    for text in [t for i in items for t in (i["service"], i.get("command") or i["span_name"])] + randoms:
        # label_replace expands $name in its replacement: $$ is a literal $
        expr = f'label_replace(vector(1), "got", {promql_string(text.replace("$", "$$"))}, "", "")'
        [sample] = prom.query_vector(expr)
        assert sample["metric"]["got"] == text, (text, expr)
    # every dashboard expression parses
    for panel in json.loads(board.read_text())["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m")
            status, body = peers.http_get_json(
                f"{prom.url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")
            assert status == 200 and body["status"] == "success", (expr, body)
