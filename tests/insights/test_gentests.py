"""``insights gen-tests``: the generated pytest files pass on the traces they came from, fail on a
planted deviation (a missing child, a much slower span), and stay safe Python whatever the names."""

from __future__ import annotations

import ast
import os
import random
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.trace import SpanKind

import otel_chronograph
from otel_chronograph.engine import SpanRecord
from otel_chronograph.insights._cli import insights
from otel_chronograph.insights._gentests import (
    allowed_sequences,
    child_sequences,
    file_names,
    render_service,
)
from otel_chronograph.insights._store import prod_scope
from tests.insights.helpers import span, store, write_otlp_json

SRC = Path(otel_chronograph.__file__).resolve().parents[1]
EVIL = '"); open("CANARY", "w"); ("'


def production(seed: int = 7, traces: int = 120) -> list[SpanRecord]:
    """Two services: ``web`` (GET -> auth, db.query, render) and ``billing-svc`` (charge -> one or,
    in 25 % of traces, two stripe.call children: a retry, a second accepted sequence)."""
    rng = random.Random(seed)
    out: list[SpanRecord] = []
    for i in range(traces):
        t = i * 10.0
        root = span("GET /orders/{id}", t, rng.lognormvariate(4.0, 0.2), service="web")
        tid, pid = root.trace_id, root.span_id
        out.append(root)
        for k, (name, mu) in enumerate((("auth", 1.5), ("db.query", 2.5), ("render", 2.0))):
            out.append(span(name, t + 0.001 * (k + 1), rng.lognormvariate(mu, 0.2), service="web",
                            trace=tid, parent=pid, kind=SpanKind.INTERNAL))
        charge = span("charge", t + 0.5, rng.lognormvariate(3.5, 0.2), service="billing-svc")
        out.append(charge)
        for k in range(2 if i % 4 == 0 else 1):
            out.append(span("stripe.call", t + 0.5 + 0.01 * k, rng.lognormvariate(3.0, 0.2),
                            service="billing-svc", trace=charge.trace_id, parent=charge.span_id,
                            kind=SpanKind.CLIENT))
    return out


def run_generated(out: Path, traces: Path, tmp: Path, *more: Path, option: bool = False) -> dict[str, str]:
    """Run the generated tests (``out`` and ``more`` directories) in a fresh pytest, the traces given
    by CHRONOGRAPH_TRACES or (``option``) --chronograph-traces; test id -> passed | failed | skipped."""
    report = tmp / f"report-{traces.stem}.xml"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    env.pop("CHRONOGRAPH_TRACES", None)
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"  # faster start; the generated tests need no plugin
    if not option:
        env["CHRONOGRAPH_TRACES"] = str(traces)
    args = [f"--chronograph-traces={traces}"] if option else []
    proc = subprocess.run([sys.executable, "-m", "pytest", str(out), *map(str, more), *args, "-q",
                           "-p", "no:cacheprovider", f"--rootdir={tmp}", f"--junitxml={report}"],
                          cwd=tmp, env=env, capture_output=True, text=True, timeout=300)
    assert report.exists(), proc.stdout + proc.stderr
    results = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        outcome = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                outcome = "failed"
            elif child.tag == "skipped":
                outcome = "skipped"
        results[f"{case.get('classname', '').rsplit('.', 1)[-1]}::{case.get('name')}"] = outcome
    assert results, proc.stdout + proc.stderr
    return results


def generate(tmp_path: Path, records: list[SpanRecord], *args: str) -> Path:
    tmp_path.mkdir(exist_ok=True)
    db = tmp_path / "prod.duckdb"
    store(db, records).close()
    out = tmp_path / "generated"
    result = CliRunner().invoke(insights, ["gen-tests", "--db", str(db), "--out", str(out), *args])
    assert result.exit_code == 0, result.output
    return out


def test_generated_tests_pass_on_their_traces_and_fail_on_planted_deviations(tmp_path: Path) -> None:
    records = production()
    out = generate(tmp_path, records, "--margin", "1.5", "--min-count", "20")
    assert sorted(p.name for p in out.iterdir()) == ["conftest.py", "test_billing_svc.py", "test_web.py"]

    same = run_generated(out, write_otlp_json(tmp_path / "same.jsonl", records), tmp_path)
    expected_ids = {f"test_web::test_child_sequence[{n}]" for n in
                    ("GET /orders/{id}", "auth", "db.query", "render")}
    assert expected_ids <= set(same)
    assert len(same) == 2 * 6  # 6 operations, a sequence and a budget test each
    assert set(same.values()) == {"passed"}, same

    # a missing child: one GET loses its db.query
    victim = next(r for r in records if r.name == "db.query")
    missing = [r for r in records if r is not victim]
    result = run_generated(out, write_otlp_json(tmp_path / "missing.jsonl", missing), tmp_path)
    assert {k for k, v in result.items() if v == "failed"} == {
        "test_web::test_child_sequence[GET /orders/{id}]"}, result

    # a much slower span: one render takes 20x its usual time
    slow_victim = next(r for r in records if r.name == "render")
    slower = [SpanRecord(r.trace_id, r.span_id, r.parent_id, r.name, r.kind, r.start_time,
                         r.start_time + 20 * (r.end_time - r.start_time), r.attributes, r.events, r.error,
                         r.status_message, r.resource, r.parent_remote) if r is slow_victim else r
              for r in records]
    result = run_generated(out, write_otlp_json(tmp_path / "slower.jsonl", slower), tmp_path)
    failed = {k for k, v in result.items() if v == "failed"}
    assert failed == {"test_web::test_latency_budget[render]"}, result

    # an extra child (a third stripe.call: never seen in production) fails too
    charge = next(r for r in records if r.name == "charge")
    extra = [*records, *(span("stripe.call", 0.6 + k, 5, service="billing-svc", trace=charge.trace_id,
                              parent=charge.span_id) for k in range(2))]
    result = run_generated(out, write_otlp_json(tmp_path / "extra.jsonl", extra), tmp_path)
    assert {k for k, v in result.items() if v == "failed"} == {
        "test_billing_svc::test_child_sequence[charge]"}, result


def test_two_generated_directories_in_one_session_with_the_option(tmp_path: Path) -> None:
    records = production(traces=30)
    web = [r for r in records if r.resource["service.name"] == "web"]
    billing = [r for r in records if r.resource["service.name"] != "web"]
    first = generate(tmp_path / "a", web)
    second = generate(tmp_path / "b", billing)
    result = run_generated(first, write_otlp_json(tmp_path / "all.jsonl", records), tmp_path, second,
                           option=True)
    assert len(result) == 12 and set(result.values()) == {"passed"}, result


def test_untrusted_names_give_safe_code(tmp_path: Path) -> None:
    records = []
    for i in range(5):
        root = span(EVIL, i, 10, service=EVIL + "\n#")
        records += [root, span('\'"""\n\\', i + 0.001, 2, service=EVIL + "\n#", trace=root.trace_id,
                               parent=root.span_id)]
    out = generate(tmp_path, records, "--min-count", "5")
    files = sorted(p.name for p in out.iterdir())
    assert files == ["conftest.py", "test_open_canary_w.py"]
    source = (out / files[1]).read_text()
    tree = ast.parse(source)
    values = {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
              for t in node.targets if isinstance(t, ast.Name)}
    assert values["SERVICE"] == EVIL + "\n#"
    assert values["SEQUENCES"] == {EVIL: [['\'"""\n\\']], '\'"""\n\\': [[]]}
    # the names never appear outside string literals: no line starts with the payload
    assert not any(line.lstrip().startswith(("open(", "#\n")) for line in source.splitlines())
    result = run_generated(out, write_otlp_json(tmp_path / "evil.jsonl", records), tmp_path)
    assert set(result.values()) == {"passed"}, result
    assert not (tmp_path / "CANARY").exists() and not (out / "CANARY").exists()


def test_child_sequences_most_common_first_in_start_order(tmp_path: Path) -> None:
    records = []
    for i in range(6):  # 4 x [a, b], 2 x [b, a]; ties in start time break by name
        root = span("op", i, 10)
        first, second = ("a", "b") if i < 4 else ("b", "a")
        records += [root, span(second, i + 0.002, 1, trace=root.trace_id, parent=root.span_id),
                    span(first, i + 0.001, 1, trace=root.trace_id, parent=root.span_id),
                    span("z", i + 0.003, 1, trace=root.trace_id, parent=root.span_id),
                    span("y", i + 0.003, 1, trace=root.trace_id, parent=root.span_id)]
    records.append(span("rare", 0, 1))
    conn = store(tmp_path / "s.duckdb", records)
    where, params = prod_scope()
    seqs = child_sequences(conn, where, params, 2)
    assert seqs["web: op"] == [(["a", "b", "y", "z"], 4), (["b", "a", "y", "z"], 2)]
    assert seqs["web: a"] == [([], 6)]
    assert "web: rare" not in seqs
    assert allowed_sequences(seqs["web: op"], 0.5) == [["a", "b", "y", "z"]]
    assert allowed_sequences(seqs["web: op"], 0.3) == [["a", "b", "y", "z"], ["b", "a", "y", "z"]]


def batches(seed: int = 9, traces: int = 100) -> list[SpanRecord]:
    """``batch`` -> fetch x N (N from 1 to 40: a loop) -> commit."""
    rng = random.Random(seed)
    out = []
    for i in range(traces):
        root = span("batch", i, 100, service="worker")
        n = rng.randint(1, 40)
        out += [root, *(span("fetch", i + 0.001 * (k + 1), 1, service="worker", trace=root.trace_id,
                             parent=root.span_id) for k in range(n)),
                span("commit", i + 0.05, 2, service="worker", trace=root.trace_id, parent=root.span_id)]
    return out


def test_collapse_repeats_makes_loops_one_step(tmp_path: Path) -> None:
    records = batches()
    conn = store(tmp_path / "s.duckdb", records)
    where, params = prod_scope()
    plain = child_sequences(conn, where, params, 20)["worker: batch"]
    assert len(plain) > 30 and max(n for _, n in plain) < 10  # no sequence is common: every N differs
    assert child_sequences(conn, where, params, 20, collapse_repeats=True)["worker: batch"] == [
        (["fetch", "commit"], 100)]
    conn.close()

    out = generate(tmp_path / "collapsed", records, "--collapse-repeats")
    same = run_generated(out, write_otlp_json(tmp_path / "same.jsonl", records), tmp_path)
    assert set(same.values()) == {"passed"}, same
    root = records[0]
    no_commit = [r for r in records if not (r.name == "commit" and r.trace_id == root.trace_id)]
    result = run_generated(out, write_otlp_json(tmp_path / "no-commit.jsonl", no_commit), tmp_path)
    assert {k for k, v in result.items() if v == "failed"} == {"test_worker::test_child_sequence[batch]"}


def test_foreign_conftest_is_not_overwritten(tmp_path: Path) -> None:
    db = tmp_path / "prod.duckdb"
    store(db, production(traces=30)).close()
    out = tmp_path / "mine"
    out.mkdir()
    (out / "conftest.py").write_text("# my own\n")
    result = CliRunner().invoke(insights, ["gen-tests", "--db", str(db), "--out", str(out)])
    assert result.exit_code == 1 and "was not generated by gen-tests" in result.output
    assert (out / "conftest.py").read_text() == "# my own\n"


def test_json_lists_what_was_written(tmp_path: Path) -> None:
    db = tmp_path / "prod.duckdb"
    store(db, production(traces=30)).close()
    result = CliRunner().invoke(insights, ["gen-tests", "--db", str(db), "--out", str(tmp_path / "o"),
                                           "--min-count", "25", "--json"])
    assert result.exit_code == 0, result.output
    import json

    items = json.loads(result.output)
    # stripe.call has 38 spans, charge/GET/auth/db.query/render 30 each: all 6 pass min-count 25
    assert {(i["service"], i["sequences"], i["budgets"]) for i in items} == {("web", 4, 4),
                                                                           ("billing-svc", 2, 2)}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=8))
def test_file_names_are_safe_and_distinct(services: list[str]) -> None:
    names = file_names(services)
    assert set(names) == set(services)
    assert len(set(names.values())) == len(names)
    for name in names.values():
        assert re.fullmatch(r"test_[a-z0-9_]+\.py", name), name


@settings(max_examples=60, deadline=None)
@given(st.text(), st.dictionaries(st.text(), st.lists(st.lists(st.text(), max_size=3), min_size=1,
                                                      max_size=2), max_size=3),
       st.floats(min_value=0, max_value=1e9))
def test_rendered_module_is_valid_and_round_trips(service: str, sequences: dict[str, list[list[str]]],
                                                  budget: float) -> None:
    source = render_service(service, sequences, {k: budget for k in sequences}, 1.5)
    tree = ast.parse(source)
    values = {t.id: ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
              for t in node.targets if isinstance(t, ast.Name)}
    budgets = {k: budget for k in sequences}
    assert values == {"SERVICE": service, "SEQUENCES": sequences, "BUDGETS_MS": budgets,
                      "COLLAPSE_REPEATS": False}


def test_empty_store_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "empty.duckdb"
    store(db, []).close()
    result = CliRunner().invoke(insights, ["gen-tests", "--db", str(db), "--out", str(tmp_path / "o")])
    assert result.exit_code == 0 and "nothing written" in result.output
    assert list((tmp_path / "o").iterdir()) == []


@pytest.mark.parametrize("margin", ["0.5", "x"])
def test_bad_margin_is_a_usage_error(tmp_path: Path, margin: str) -> None:
    result = CliRunner().invoke(insights, ["gen-tests", "--out", str(tmp_path), "--margin", margin])
    assert result.exit_code == 2 and "--margin" in result.output


# -- end to end: the generated tests on what the real Collector's file exporter wrote ----------------

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "e2e"))
import peers  # noqa: E402


def collector_export(workdir: Path, records: list[SpanRecord], db: Path) -> Path:
    """Replay ``db`` into the real Collector (collector-config/file-export.yaml); its traces.jsonl once
    every span of ``records`` is in it."""
    from otel_chronograph.sources import read_records

    try:
        collector = peers.start_collector(workdir, "file-export.yaml")
    except peers.PeerError as exc:
        pytest.fail(f"{exc} (scripts/build-peers.sh builds the Collector)", pytrace=False)
    traces = workdir / "otel-export" / "traces.jsonl"
    try:
        result = CliRunner().invoke(insights, ["replay", "--db", str(db), "--speed", "max",
                                               "--endpoint", collector.otlp_grpc_endpoint])
        assert result.exit_code == 0, result.output

        def exported() -> int:
            if not traces.exists():
                return 0
            n = sum(len(b) for b in read_records(traces, lambda *_: None))
            return n if n >= len(records) else 0

        peers.wait_until(exported, 60, "the replayed spans in traces.jsonl", on_poll=collector.check_alive)
    finally:
        collector.stop()
    return traces


@pytest.mark.e2e
def test_generated_tests_on_the_real_collector_file_export(tmp_path: Path) -> None:
    records = production(traces=40)
    out = generate(tmp_path / "gen", records)
    traces = collector_export(tmp_path / "otelcol-same", records, tmp_path / "gen" / "prod.duckdb")
    same = run_generated(out, traces, tmp_path)
    assert len(same) == 12 and set(same.values()) == {"passed"}, same

    victim = next(r for r in records if r.name == "auth")
    missing = [r for r in records if r is not victim]
    db = tmp_path / "missing.duckdb"
    store(db, missing).close()
    traces = collector_export(tmp_path / "otelcol-missing", missing, db)
    result = run_generated(out, traces, tmp_path)
    assert {k for k, v in result.items() if v == "failed"} == {
        "test_web::test_child_sequence[GET /orders/{id}]"}, result
