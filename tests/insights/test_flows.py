"""``flows check``: planted missing, extra and reordered children are found in the right trace, and
conforming traces are never reported."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_chronograph.engine import SpanRecord
from otel_chronograph.insights._cli import insights
from otel_chronograph.insights._flows import check_flows, compare_children, load_flow_spec
from otel_chronograph.insights._store import open_store

from .helpers import new_id, span, store

OP = "web: POST /orders"
EXPECTED = ["auth", "db.insert", "queue.publish"]
SPEC = f'flows:\n  "{OP}": [auth, db.insert, queue.publish]\n  "web: GET /health": []\n'


def trace(children: Sequence[str], start_s: float = 0.0, *, gap_s: float = 0.001,
          root: str = "POST /orders", service: str = "web") -> tuple[int, list[SpanRecord]]:
    """A trace: one ``root`` span with ``children`` started in list order."""
    tid, root_id = new_id(), new_id()
    spans = [span(root, start_s, 50, service=service, trace=tid, span_id=root_id)]
    spans += [span(name, start_s + (i + 1) * gap_s, 1, service=service, trace=tid, parent=root_id)
              for i, name in enumerate(children)]
    return tid, spans


def bulk_store(path: Path, records: Sequence[SpanRecord]) -> None:
    store(path, records).close()


def tid_hex(tid: int) -> str:
    return f"{tid:032x}"


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """40 conforming traces, one trace per deviation kind, plus health checks (no children)."""
    records: list[SpanRecord] = []
    for i in range(40):
        records += trace(EXPECTED, i)[1]
    ids = {}
    ids["missing"], spans = trace(["auth", "queue.publish"], 100)
    records += spans
    ids["extra"], spans = trace(["auth", "db.insert", "cache.set", "queue.publish"], 101)
    records += spans
    ids["order"], spans = trace(["db.insert", "auth", "queue.publish"], 102)
    records += spans
    for i in range(5):
        records += trace([], 200 + i, root="GET /health")[1]
    db = tmp_path / "s.duckdb"
    store(db, records).close()
    return db, ids


def test_each_planted_kind_is_reported_in_its_trace(planted: tuple[Path, dict[str, int]]) -> None:
    db, ids = planted
    conn = open_store(str(db), read_only=True)
    result = check_flows(conn, load_spec_text(db.parent, SPEC))
    orders, health = result
    assert (orders["operation"], orders["service"], orders["span_name"]) == (OP, "web", "POST /orders")
    assert (orders["traces"], orders["conforming"]) == (43, 40)
    got = [(d["trace_id"], d["kind"]) for d in orders["deviations"]]
    assert sorted(got) == sorted((tid_hex(ids[k]), k) for k in ("missing", "extra", "order"))
    by_kind = {d["kind"]: d["detail"] for d in orders["deviations"]}
    assert by_kind["missing"] == '"db.insert" expected 1×, not observed'
    assert by_kind["extra"] == '"cache.set" observed 1×, expected 0×'
    assert by_kind["order"] == ('expected ["auth", "db.insert", "queue.publish"], '
                                'observed ["db.insert", "auth", "queue.publish"]')
    assert health == {"operation": "web: GET /health", "service": "web", "span_name": "GET /health",
                      "traces": 5, "conforming": 5, "deviations": []}
    # the check leaves nothing behind in the (read-only) connection
    assert conn.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone() == (0,)


def load_spec_text(folder: Path, text: str) -> dict[str, list[str]]:
    path = folder / "spec.yaml"
    path.write_text(text)
    return load_flow_spec(str(path))


def test_repeated_children_are_a_sequence(tmp_path: Path) -> None:
    """``[a, b, b]`` expects two b's: one b is missing, three is one extra, a b before a is reordered."""
    records: list[SpanRecord] = []
    ok, s = trace(["a", "b", "b"], 0)
    records += s
    few, s = trace(["a", "b"], 1)
    records += s
    many, s = trace(["a", "b", "b", "b"], 2)
    records += s
    moved, s = trace(["b", "a", "b"], 3)
    records += s
    store(tmp_path / "s.duckdb", records).close()
    conn = open_store(str(tmp_path / "s.duckdb"), read_only=True)
    [item] = check_flows(conn, {OP: ["a", "b", "b"]})
    assert (item["traces"], item["conforming"]) == (4, 1)
    assert [(d["trace_id"], d["kind"], d["detail"]) for d in item["deviations"]] == sorted([
        (tid_hex(few), "missing", '"b" expected 2×, observed 1×'),
        (tid_hex(many), "extra", '"b" observed 3×, expected 2×'),
        (tid_hex(moved), "order", 'expected ["a", "b", "b"], observed ["b", "a", "b"]'),
    ])
    assert ok not in {int(d["trace_id"], 16) for d in item["deviations"]}


def test_children_of_other_spans_and_traces_do_not_count(tmp_path: Path) -> None:
    """Grandchildren, siblings and a span id reused in another trace are not children."""
    tid, spans = trace(EXPECTED, 0)
    root_id = spans[0].span_id
    grandchild = span("sql", 0.0015, 1, trace=tid, parent=spans[1].span_id)
    other = span("intruder", 0.002, 1, trace=new_id(), parent=root_id)  # same parent id, other trace
    store(tmp_path / "s.duckdb", [*spans, grandchild, other]).close()
    conn = open_store(str(tmp_path / "s.duckdb"), read_only=True)
    [item] = check_flows(conn, {OP: EXPECTED})
    assert (item["traces"], item["conforming"], item["deviations"]) == (1, 1, [])


def test_a_trace_with_one_bad_span_of_two_does_not_conform(tmp_path: Path) -> None:
    tid, spans = trace(EXPECTED, 0)
    second = span("POST /orders", 0.5, 5, trace=tid)
    kid = span("auth", 0.501, 1, trace=tid, parent=second.span_id)
    store(tmp_path / "s.duckdb", [*spans, second, kid]).close()
    conn = open_store(str(tmp_path / "s.duckdb"), read_only=True)
    [item] = check_flows(conn, {OP: EXPECTED})
    assert (item["traces"], item["conforming"]) == (1, 0)
    assert [d["kind"] for d in item["deviations"]] == ["missing", "missing"]


def test_the_cap_limits_the_list_not_the_counts(tmp_path: Path) -> None:
    records: list[SpanRecord] = []
    for i in range(30):
        records += trace(["auth"], i)[1]  # two missing per trace
    store(tmp_path / "s.duckdb", records).close()
    conn = open_store(str(tmp_path / "s.duckdb"), read_only=True)
    [item] = check_flows(conn, {OP: EXPECTED}, max_deviations=7)
    assert (item["traces"], item["conforming"], len(item["deviations"])) == (30, 0, 7)
    ids = [d["trace_id"] for d in item["deviations"]]
    assert ids == sorted(ids)


def test_window_and_labels_narrow_the_parents(tmp_path: Path) -> None:
    _, early = trace(["auth"], 0)
    _, late = trace(EXPECTED, 3600)
    db = tmp_path / "s.duckdb"
    conn = store(db, [*early, *late])
    conn.close()
    store(db, trace(["x"], 10)[1], label="test").close()
    conn = open_store(str(db), read_only=True)
    [whole] = check_flows(conn, {OP: EXPECTED})
    assert (whole["traces"], whole["conforming"]) == (2, 1)
    [later] = check_flows(conn, {OP: EXPECTED}, "label = 'prod' AND start_ns >= ?", [late[0].start_time])
    assert (later["traces"], later["conforming"], later["deviations"]) == (1, 1, [])


def test_an_operation_absent_from_the_store_has_no_traces(tmp_path: Path) -> None:
    store(tmp_path / "s.duckdb", []).close()
    conn = open_store(str(tmp_path / "s.duckdb"), read_only=True)
    assert check_flows(conn, {"api: GET /x: y": ["a"]}) == [
        {"operation": "api: GET /x: y", "service": "api", "span_name": "GET /x: y", "traces": 0,
         "conforming": 0, "deviations": []}]


def test_cli_json_and_exit_status(planted: tuple[Path, dict[str, int]]) -> None:
    db, ids = planted
    spec = db.parent / "spec.yaml"
    spec.write_text(SPEC)
    res = CliRunner().invoke(insights, ["flows", "check", "--spec", str(spec), "--db", str(db), "--json"])
    assert res.exit_code == 1, res.output
    out = json.loads(res.output)
    assert [(o["operation"], o["traces"], o["conforming"], len(o["deviations"])) for o in out] == [
        (OP, 43, 40, 3), ("web: GET /health", 5, 5, 0)]
    text = CliRunner().invoke(insights, ["flows", "check", "--spec", str(spec), "--db", str(db)])
    assert text.exit_code == 1
    assert text.output.splitlines()[0].split() == ["operation", "traces", "conforming", "deviating"]
    assert tid_hex(ids["order"]) in text.output
    spec.write_text('flows:\n  "web: GET /health": []\n')
    ok = CliRunner().invoke(insights, ["flows", "check", "--spec", str(spec), "--db", str(db), "--json"])
    assert ok.exit_code == 0, ok.output
    # --since after the health checks: nothing to check, nothing deviates
    late = CliRunner().invoke(insights, ["flows", "check", "--spec", str(spec), "--db", str(db),
                                         "--since", "2026-11-03", "--json"])
    assert (late.exit_code, json.loads(late.output)[0]["traces"]) == (0, 0)


@pytest.mark.parametrize(("text", "reason"), [
    ("flows: [a, b]\n", "'flows' must be a non-empty mapping"),
    ("flow:\n  'web: x': []\n", "expected a mapping with key 'flows'"),
    ("flows:\n  'web: x': []\nextra: 1\n", "unknown key 'extra'"),
    ("flows:\n  GET /x: [a]\n", "flows key 'GET /x' is not an operation"),
    ("flows:\n  'web: x': a\n", "flows['web: x'] must be a list of child span names"),
    ("flows:\n  'web: x': [a, {b: c}]\n", "flows['web: x'] must be a list of child span names"),
    ("flows: {'web: x': [a\n", "not YAML"),
])
def test_bad_specs_are_one_line_errors(tmp_path: Path, text: str, reason: str) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(text)
    with pytest.raises(click.ClickException) as err:
        load_flow_spec(str(spec))
    assert str(spec) in err.value.message and reason in err.value.message
    db = tmp_path / "s.duckdb"
    store(db, []).close()
    res = CliRunner().invoke(insights, ["flows", "check", "--spec", str(spec), "--db", str(db)])
    assert res.exit_code == 1 and "Traceback" not in res.output
    assert f"Error: {spec}" in res.output and reason in res.output


def test_missing_spec_file(tmp_path: Path) -> None:
    res = CliRunner().invoke(insights, ["flows", "check", "--spec", str(tmp_path / "none.yaml"),
                                        "--db", str(tmp_path / "s.duckdb")])
    assert res.exit_code == 1 and f"{tmp_path / 'none.yaml'}: cannot read the flow spec" in res.output


names = st.lists(st.sampled_from(["a", "b", "c", "d", "e"]), max_size=8)


@given(expected=names, data=st.data())
@settings(max_examples=40, deadline=None)
def test_property_expected_conforms_and_removal_is_missing(expected: list[str], data: st.DataObject) -> None:
    """A trace built from the expected list conforms; the same trace less one child is 'missing' only."""
    records: list[SpanRecord] = []
    _, full = trace(expected, 0)
    records += full
    cut_id = None
    if expected:
        drop = data.draw(st.integers(0, len(expected) - 1))
        cut_id, cut = trace(expected[:drop] + expected[drop + 1:], 1)
        records += cut
    conn = store(Path(":memory:"), records)
    [item] = check_flows(conn, {OP: expected})
    conn.close()
    assert item["traces"] == (2 if expected else 1)
    assert item["conforming"] == 1
    if cut_id is not None:
        assert [(d["trace_id"], d["kind"]) for d in item["deviations"]] == [(tid_hex(cut_id), "missing")]


@given(expected=names, observed=names)
def test_property_compare_kinds(expected: list[str], observed: list[str]) -> None:
    """No deviation iff equal; 'order' only when the shared children are in another order."""
    kinds = {k for k, _ in compare_children(expected, observed)}
    assert (not kinds) == (expected == observed)
    if sorted(expected) == sorted(observed) and expected != observed:
        assert kinds == {"order"}
    if "order" in kinds:
        assert expected != observed


def test_a_file_that_is_not_a_store(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC)
    missing = CliRunner().invoke(insights, ["flows", "check", "--spec", str(spec), "--db",
                                            str(tmp_path / "none.duckdb")])
    assert missing.exit_code == 1 and "cannot read the insights store" in missing.output
    import duckdb
    duckdb.connect(str(tmp_path / "other.duckdb")).close()
    other = CliRunner().invoke(insights, ["flows", "check", "--spec", str(spec), "--db",
                                          str(tmp_path / "other.duckdb")])
    assert other.exit_code == 1 and "not an insights store (no spans table)" in other.output


def test_seeded_planted_deviations_precision_and_recall(tmp_path: Path) -> None:
    """300 traces, about 15 % with one planted deviation of a random kind: found exactly (P = R = 1)."""
    rng = random.Random(12)
    expected = ["auth", "db.insert", "queue.publish", "audit"]
    records: list[SpanRecord] = []
    planted: set[tuple[str, str]] = set()
    for i in range(300):
        children = list(expected)
        kind = rng.choices(["none", "missing", "extra", "order"], [85, 5, 5, 5])[0]
        if kind == "missing":
            children.pop(rng.randrange(len(children)))
        elif kind == "extra":
            children.insert(rng.randrange(len(children) + 1), rng.choice(["cache.get", "auth"]))
        elif kind == "order":
            while children == expected:
                rng.shuffle(children)
        tid, spans = trace(children, i)
        records += spans
        if kind != "none":
            planted.add((tid_hex(tid), kind))
    bulk_store(tmp_path / "s.duckdb", records)
    conn = open_store(str(tmp_path / "s.duckdb"), read_only=True)
    [item] = check_flows(conn, {OP: expected})
    found = {(d["trace_id"], d["kind"]) for d in item["deviations"]}
    assert 30 <= len(planted) <= 70  # the seed plants a meaningful number of each
    assert {k for _, k in planted} == {"missing", "extra", "order"}
    assert found == planted  # precision 1.0 and recall 1.0
    assert (item["traces"], item["conforming"]) == (300, 300 - len(planted))
