"""``report``: the JSON content on a constructed shop (exact figures), the critical path on hand-built
async fan-out traces (and as a property on random trees), escaping of hostile names, one-line errors
for bad input, and the page opened in headless Chromium (no console error, every section, no network
request, a screenshot kept in test-artifacts/)."""

from __future__ import annotations

import itertools
import json
import random
import shutil
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_chronograph.engine import SpanRecord
from otel_chronograph.insights._cli import insights
from otel_chronograph.insights._report import MAX_COLUMNS, SECTIONS, build_report, choose_bucket
from otel_chronograph.insights._report_html import render
from otel_chronograph.insights._store import prod_scope
from otel_chronograph.insights._waterfall import WSpan, critical_path, waterfall

from . import browser
from .helpers import EPOCH_NS, new_id, span, store

REPO = Path(__file__).resolve().parents[2]
HOSTILE = "<script>alert(1)</script>"
EVIL_SERVICE = 'evil"svc<u>&co'
EVIL_VALUE = '"><img src=x onerror=alert(2)>'
TRACES = 300
SLOW_TRACE_INDEX = 150
REORDERED = {7, 67, 127, 187, 247}  # traces whose root calls charge before load order


class Shop:
    """A constructed store: web -> orders (-> db) and web -> payments, a planted 2 s charge."""

    def __init__(self) -> None:
        rng = random.Random(12)
        self.records: list[SpanRecord] = []
        self.slow: dict[str, str] = {}
        for i in range(TRACES):
            t = i * 24.0
            tid, rid = new_id(), new_id()
            failed = rng.random() < 0.2
            o_at, p_at = (0.050, 0.002) if i in REORDERED else (0.002, 0.050)
            load = span("load order", t + o_at, rng.lognormvariate(3, 0.3), service="orders", trace=tid,
                        parent=rid, kind=_kind("CLIENT"))
            query = span("SELECT orders", t + o_at + 0.001, rng.lognormvariate(2, 0.3), service="orders",
                         trace=tid, parent=load.span_id, kind=_kind("CLIENT"))
            charge = span("charge", t + p_at, 2000.0 if i == SLOW_TRACE_INDEX else rng.lognormvariate(3, 0.2),
                          service="payments", trace=tid, parent=rid, error=failed,
                          attributes={"region": EVIL_VALUE if failed else "us"})
            hostile = span(HOSTILE, t + 0.060, 1.0, service="web", trace=tid, parent=rid,
                           kind=_kind("INTERNAL"))
            kids = [load, query, charge, hostile]
            if i % 10 == 0:
                kids.append(span("audit", t + 0.061, 2.0, service=EVIL_SERVICE, trace=tid, parent=rid))
            end = max(k.end_time for k in kids)
            root = span("GET /orders/{id}", t, (end - (EPOCH_NS + int(t * 1e9))) / 1e6 + 1.0, service="web",
                        trace=tid, span_id=rid)
            self.records += [root, *kids]
            if i == SLOW_TRACE_INDEX:
                self.slow = {"trace": f"{tid:032x}", "root": f"{rid:016x}", "load": f"{load.span_id:016x}",
                             "query": f"{query.span_id:016x}", "charge": f"{charge.span_id:016x}",
                             "hostile": f"{hostile.span_id:016x}"}

    def durations(self) -> dict[str, list[float]]:
        out: dict[str, list[float]] = defaultdict(list)
        for r in self.records:
            out[f"{r.resource['service.name']}: {r.name}"].append((r.end_time - r.start_time) / 1e6)
        return out


def _kind(name: str) -> Any:
    from opentelemetry.trace import SpanKind

    return SpanKind[name]


LAP_ROWS = [("a" * 32, "b" * 16, "cli", "deploy", "cli: deploy", EPOCH_NS, 1200.0, "GREEN", False, None,
             None, 0.0, "{}", "[]", "prod"),
            ("c" * 32, "d" * 16, "cli", "deploy", "cli: deploy", EPOCH_NS + 10**9, 9000.0, "RED", True, None,
             None, 0.0, "{}", "[]", "prod")]


@pytest.fixture(scope="module")
def shop() -> Shop:
    return Shop()


@pytest.fixture(scope="module")
def db(shop: Shop, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("report") / "shop.duckdb"
    conn = store(path, shop.records)
    conn.executemany("INSERT INTO laps VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", LAP_ROWS)
    conn.close()
    return path


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("inputs")
    flows = d / "flows.yaml"
    flows.write_text('flows:\n  "web: GET /orders/{id}": ["load order", "charge", '
                     '"<script>alert(1)</script>"]\n', encoding="utf-8")
    handlers = d / "handlers.txt"
    handlers.write_text("web: GET /orders/{id}\nweb: DELETE /orders/{id}\npayments: charge\n",
                        encoding="utf-8")
    return {"flows": flows, "handlers": handlers}


def run(*args: str) -> Result:
    return CliRunner().invoke(insights, ["report", *args])


@pytest.fixture(scope="module")
def full(db: Path, inputs: dict[str, Path],
         tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """The report of the shop with every optional input: (html path, json content)."""
    out = tmp_path_factory.mktemp("out")
    result = run("--db", str(db), "--html", str(out / "report.html"), "--json", str(out / "report.json"),
                 "--flows", str(inputs["flows"]), "--handlers", str(inputs["handlers"]), "--key", "region")
    assert result.exit_code == 0, result.output
    return out / "report.html", json.loads((out / "report.json").read_text(encoding="utf-8"))


# -- the JSON content ---------------------------------------------------------------------------------

def test_every_section_is_in_the_json(full: tuple[Path, dict[str, Any]]) -> None:
    _, report = full
    assert list(report) == ["generated", *SECTIONS]


def test_json_is_strict(full: tuple[Path, dict[str, Any]]) -> None:
    """No Infinity/NaN (a browser's JSON.parse refuses them): the planted value's lift is infinite."""
    text = full[0].with_suffix(".json").read_text(encoding="utf-8")

    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in the JSON")

    json.loads(text, parse_constant=refuse)
    first = next(i for i in json.loads(text)["correlations"]["items"] if i["target"] == "error")
    assert first["share_rest"] == 0 and first["lift"] is None


def test_summary_counts(full: tuple[Path, dict[str, Any]], shop: Shop) -> None:
    s = full[1]["summary"]
    errors = sum(r.error for r in shop.records)
    assert s["spans"] == len(shop.records)
    assert s["traces"] == TRACES
    assert s["services"] == 4
    assert s["error_spans"] == errors
    assert s["error_rate"] == pytest.approx(errors / len(shop.records))
    assert s["error_traces"] == errors  # one failing charge per failing trace
    assert s["from"] == "2026-11-02T00:00:00Z"


def test_slowest_operations_match_numpy_and_the_slowest_is_first(full: tuple[Path, dict[str, Any]],
                                                                shop: Shop) -> None:
    items = full[1]["slowest"]["items"]
    durations = shop.durations()
    expected = sorted(durations, key=lambda op: -float(np.percentile(durations[op], 95)))
    assert [i["operation"] for i in items] == expected
    assert items[0]["operation"] == "web: GET /orders/{id}"
    for item in items:
        d = durations[item["operation"]]
        assert item["count"] == len(d)
        assert item["p50_ms"] == pytest.approx(np.percentile(d, 50), rel=1e-6)
        assert item["p95_ms"] == pytest.approx(np.percentile(d, 95), rel=1e-6)
        assert item["p99_ms"] == pytest.approx(np.percentile(d, 99), rel=1e-6)
    charge = next(i for i in items if i["operation"] == "payments: charge")
    assert charge["error_rate"] == pytest.approx(sum(r.error for r in shop.records) / TRACES)


def test_heatmap_buckets_and_the_planted_cell(full: tuple[Path, dict[str, Any]], shop: Shop) -> None:
    h = full[1]["heatmap"]
    assert len(h["buckets"]) <= MAX_COLUMNS
    assert h["bucket_s"] == 300  # 2 hours: 2-minute columns would be 60
    charge = next(r for r in h["rows"] if r["operation"] == "payments: charge")
    assert sum(charge["counts"]) == TRACES
    slow_bucket = int(SLOW_TRACE_INDEX * 24.0 // 300)
    assert max(v for v in charge["cells"] if v is not None) == charge["cells"][slow_bucket]
    cells: dict[int, list[float]] = defaultdict(list)
    for r in shop.records:
        if r.name == "charge":
            cells[(r.start_time - EPOCH_NS) // (300 * 10**9)].append((r.end_time - r.start_time) / 1e6)
    assert charge["cells"] == pytest.approx([float(np.percentile(cells[b], 95)) for b in range(24)], rel=1e-9)
    # rows: slowest p95 first
    p95s = [r["p95_ms"] for r in h["rows"]]
    assert p95s == sorted(p95s, reverse=True)


@given(st.integers(0, 10**18), st.integers(0, 10**15))
def test_choose_bucket_never_exceeds_the_column_limit(first: int, length: int) -> None:
    seconds, start = choose_bucket(first, first + length)
    size = seconds * 10**9
    assert start <= first < start + size
    assert (first + length - start) // size + 1 <= MAX_COLUMNS


def test_waterfalls_default_to_the_slowest_trace_with_its_critical_path(full: tuple[Path, dict[str, Any]],
                                                                      shop: Shop) -> None:
    items = full[1]["waterfalls"]["items"]
    planted = next(w for w in items if w["trace_id"] == shop.slow["trace"])
    assert planted["reason"] == "slowest span of web: GET /orders/{id}"
    ids = shop.slow
    # charge ends last; load order (and its query) ran before charge started; the hostile span ran
    # concurrently with charge and is off the path
    assert planted["critical_path"] == [ids["root"], ids["load"], ids["query"], ids["charge"]]
    rows = {r["span_id"]: r for r in planted["rows"]}
    assert rows[ids["query"]]["depth"] == 2
    assert not rows[ids["hostile"]]["critical"]
    assert planted["critical_ms"] == pytest.approx(planted["root_duration_ms"])


def test_dependencies_count_calls_and_errors_across_services(full: tuple[Path, dict[str, Any]],
                                                           shop: Shop) -> None:
    d = full[1]["dependencies"]
    edges = {(x["from"], x["to"]): (x["calls"], x["errors"]) for x in d["edges"]}
    failed = sum(r.error for r in shop.records)
    assert edges == {("web", "orders"): (TRACES, 0), ("web", "payments"): (TRACES, failed),
                     ("web", EVIL_SERVICE): (TRACES // 10, 0)}  # orders -> orders is not a dependency


def test_flows_coverage_mutations_laps(full: tuple[Path, dict[str, Any]]) -> None:
    report = full[1]
    (flow,) = report["flows"]["items"]
    # reordered traces deviate (order), and so do those with an audit child (extra)
    assert (flow["traces"], flow["conforming"]) == (TRACES, TRACES - len(REORDERED) - TRACES // 10)
    assert {d["kind"] for d in flow["deviations"]} == {"order", "extra"}
    cov = report["coverage"]
    assert (cov["declared"], cov["executed_in_production"], cov["executed_in_tests"]) == (3, 2, None)
    (key,) = report["mutations"]["items"]
    assert [(o["operation"], o["writes"]) for o in key["operations"]] == [("payments: charge", TRACES)]
    (lap,) = report["laps"]["items"]
    assert (lap["command"], lap["count"], lap["green"], lap["red"]) == ("deploy", 2, 1, 1)


def test_correlations_rank_the_planted_value_first(full: tuple[Path, dict[str, Any]]) -> None:
    c = full[1]["correlations"]
    assert "unavailable" not in c  # on main since 5ae51e7
    first_error = next(i for i in c["items"] if i["target"] == "error")
    assert first_error["attributes"] == {"region": EVIL_VALUE}


def test_detectors_missing_or_present(full: tuple[Path, dict[str, Any]], shop: Shop) -> None:
    """A detector on another branch is 'unavailable' until merged; once merged it must find the plant."""
    report = full[1]
    for name in ("anomalies", "regressions"):
        section = report[name]
        assert ("unavailable" in section) != ("items" in section), section
    if "items" in report["anomalies"]:
        # the planted 2 s charge and the root that waited on it score highest
        top = {a["span_id"] for a in report["anomalies"]["items"][:2]}
        assert top == {shop.slow["charge"], shop.slow["root"]}


def test_sections_without_their_input_say_how_to_enable_them(db: Path, tmp_path: Path) -> None:
    result = run("--db", str(db), "--html", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert "--flows FILE" in report["flows"]["disabled"]
    assert "--handlers FILE" in report["coverage"]["disabled"]
    assert "--key K" in report["mutations"]["disabled"]
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "Not enabled: pass --flows FILE" in page


def test_coverage_with_test_run_files(db: Path, inputs: dict[str, Path], tmp_path: Path) -> None:
    """--tests files are read by coverage's own reader; a malformed line is reported and exits 2."""
    from ..engine.test_sources_agree import as_otlp_json
    from .test_coverage import sdk_spans

    run_file = tmp_path / "test-run.jsonl"
    run_file.write_text(json.dumps(as_otlp_json(sdk_spans("payments", ["charge", "charge"]))) + "\n",
                        encoding="utf-8")
    args = ["--db", str(db), "--html", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json"),
            "--handlers", str(inputs["handlers"]), "--tests", str(run_file)]
    result = run(*args)
    assert result.exit_code == 0, result.output
    cov = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["coverage"]
    assert cov["executed_in_tests"] == 1
    assert {h["operation"]: h["tests"] for h in cov["handlers"]} == {
        "web: GET /orders/{id}": 0, "web: DELETE /orders/{id}": 0, "payments: charge": 2}
    with run_file.open("a", encoding="utf-8") as f:
        f.write("{not json\n")
    result = run(*args)
    assert result.exit_code == 2
    assert f"{run_file}:2:" in result.output and (tmp_path / "r.html").exists()


def test_an_empty_store_gives_a_page_that_says_so(tmp_path: Path) -> None:
    store(tmp_path / "empty.duckdb", []).close()
    result = run("--db", str(tmp_path / "empty.duckdb"), "--html", str(tmp_path / "r.html"), "--json",
                 str(tmp_path / "r.json"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert report["summary"]["spans"] == 0 and report["waterfalls"]["items"] == []
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert page.count("No spans in the window.") >= 3  # heatmap, slowest, dependencies
    for name in SECTIONS[:-1]:
        assert f'<section id="{name}">' in page


def test_trace_option_draws_exactly_the_chosen_traces(db: Path, shop: Shop, tmp_path: Path) -> None:
    other = f"{shop.records[0].trace_id:032x}"
    result = run("--db", str(db), "--html", str(tmp_path / "r.html"), "--json", str(tmp_path / "r.json"),
                 "--trace", shop.slow["trace"].upper(), "--trace", other)
    assert result.exit_code == 0, result.output
    items = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))["waterfalls"]["items"]
    assert [w["trace_id"] for w in items] == [shop.slow["trace"], other]
    assert {w["reason"] for w in items} == {"chosen with --trace"}


def test_window_narrows_every_section(db: Path) -> None:
    import duckdb

    conn = duckdb.connect(str(db), read_only=True)
    try:
        where, params = prod_scope("2026-11-02T01:00:00Z", None)
        report = build_report(conn, where, params)
    finally:
        conn.close()
    assert report["summary"]["traces"] == TRACES - 150  # traces start every 24 s: 150 in the first hour
    assert report["summary"]["from"] == "2026-11-02T01:00:00Z"
    assert report["laps"]["items"] == []  # the laps are at the epoch
    page = render(report)
    assert '<section id="laps">' not in page and '<section id="heatmap">' in page  # laps: only with rows


# -- escaping -----------------------------------------------------------------------------------------

class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def test_hostile_names_are_shown_as_text_never_markup(full: tuple[Path, dict[str, Any]]) -> None:
    page = full[0].read_text(encoding="utf-8")
    assert HOSTILE not in page and EVIL_VALUE not in page and EVIL_SERVICE not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    parser = _Tags()
    parser.feed(page)
    assert parser.tags.count("script") == 2  # the error hook and the table sorter, nothing else
    assert "img" not in parser.tags and "u" not in parser.tags
    text = "".join(parser.text)
    assert HOSTILE in text and EVIL_SERVICE in text and EVIL_VALUE in text  # shown, as text


def test_render_escapes_every_field() -> None:
    """Every string field of a minimal report holding markup renders without a single injected tag."""
    evil = '<i onclick="x()">&"\''
    report = {"generated": "2026-11-02T00:00:00Z",
              "summary": {"from": evil, "to": evil, "spans": 1, "traces": 1, "services": 1, "operations": 1,
                          "error_rate": 0.0, "error_traces": 0, "trace_error_rate": 0.0},
              "heatmap": {"bucket_s": 60, "start": "2026-11-02T00:00:00Z",
                          "buckets": ["2026-11-02T00:00:00Z"], "min_ms": 1.0, "max_ms": 1.0, "operations": 1,
                          "rows": [{"operation": evil, "count": 1, "p95_ms": 1.0, "cells": [1.0],
                                    "counts": [1], "errors": [1]}]},
              "slowest": {"operations": 1, "items": [{"operation": evil, "count": 1, "p50_ms": 1.0,
                                                      "p95_ms": 1.0, "p99_ms": 1.0, "max_ms": 1.0,
                                                      "error_rate": 1.0, "rate_per_s": 1.0}]},
              "waterfalls": {"items": [{"trace_id": evil, "reason": evil, "root": evil,
                                        **waterfall([{"span_id": evil, "parent_id": None, "start_ns": 0,
                                                      "end_ns": 10**6, "name": evil, "service": evil,
                                                      "kind": evil, "error": True}])}]},
              "dependencies": {"services": [{"service": evil, "spans": 1, "errors": 1},
                                            {"service": "b", "spans": 1, "errors": 0}],
                               "edges": [{"from": evil, "to": "b", "calls": 1, "errors": 1}],
                               "operation_edges": [{"from": evil, "to": evil, "calls": 1, "errors": 1}]},
              "correlations": {"total": 1, "items": [{"target": "error", "attributes": {evil: evil},
                                                      "traces": 1, "share_selected": 1.0, "share_rest": 0.0,
                                                      "lift": 2.0, "g": 1.0, "q_value": 0.0}]},
              "anomalies": {"total": 1, "items": [{"score": 9.0, "operation": evil, "duration_ms": 9.0,
                                                   "baseline_ms": 1.0, "start": evil, "trace_id": evil,
                                                   "span_id": evil}]},
              "regressions": {"total": 1, "items": [{"operation": evil, "change_at": evil, "before_ms": 1.0,
                                                     "after_ms": 2.0, "p_value": 0.001}]},
              "flows": {"items": [{"operation": evil, "traces": 1, "conforming": 0,
                                   "deviations": [{"trace_id": evil, "kind": evil, "detail": evil}]}]},
              "coverage": {"declared": 1, "executed_in_production": 0, "executed_in_tests": None,
                           "handlers": [{"operation": evil, "production": 0, "tests": None}],
                           "undeclared": [{"operation": evil, "production": 1}]},
              "mutations": {"items": [{"key": evil,
                                       "operations": [{"operation": evil, "writes": 1, "traces": 1}],
                                       "sequences": [{"order": [evil, evil], "traces": 1}]}]},
              "laps": {"items": [{"command": evil, "operation": evil, "count": 1, "green": 0, "yellow": 0,
                                  "red": 1, "errors": 1, "p50_ms": 1.0, "p95_ms": 1.0}]}}
    page = render(report)
    parser = _Tags()
    parser.feed(page)
    assert "i" not in parser.tags
    assert "onclick" not in page.replace("onclick=&quot;", "")
    for name in SECTIONS:
        assert f'<section id="{name}">' in page


# -- the critical path --------------------------------------------------------------------------------

def ws(sid: str, parent: str | None, start_ms: float, end_ms: float) -> WSpan:
    return WSpan(sid, parent, int(start_ms * 1e6), int(end_ms * 1e6))


def test_critical_path_async_fan_out() -> None:
    """R fans out A, B, C concurrently; B waits on B1; D overruns R (clipped); E starts after R ended.

    Jaeger's walk takes the child that *ends* last (E, then D unclipped) and misses B; the right path
    is R -> B -> B1 then D (clipped to R's end).
    """
    spans = [ws("R", None, 0, 100), ws("A", "R", 5, 40), ws("B", "R", 5, 90), ws("C", "R", 10, 30),
             ws("B1", "B", 10, 85), ws("D", "R", 95, 130), ws("E", "R", 110, 120)]
    path, segments = critical_path(spans)
    assert path == ["R", "B", "B1", "D"]
    assert [(s, a / 1e6, b / 1e6) for s, a, b in segments] == [
        ("R", 0, 5), ("B", 5, 10), ("B1", 10, 85), ("B", 85, 90), ("R", 90, 95), ("D", 95, 100)]


def test_critical_path_sequential_children_touching() -> None:
    spans = [ws("R", None, 0, 100), ws("A", "R", 0, 40), ws("B", "R", 40, 100), ws("X", "R", 10, 60)]
    path, _ = critical_path(spans)
    assert path == ["R", "A", "B"]  # X overlaps B's start: B waited on A, not X


def test_critical_path_fan_out_join() -> None:
    """Three parallel calls, the slowest in the middle; then a sequential step after the join."""
    spans = [ws("R", None, 0, 100), ws("p1", "R", 10, 50), ws("p2", "R", 10, 70), ws("p3", "R", 12, 40),
             ws("after", "R", 70, 95), ws("inner", "p2", 20, 69)]
    path, segments = critical_path(spans)
    assert path == ["R", "p2", "inner", "after"]
    assert sum(b - a for _, a, b in segments) == 100 * 10**6


def test_critical_path_deep_chain_does_not_recurse() -> None:
    n = 5000
    spans = [ws(f"s{i}", f"s{i - 1}" if i else None, i * 0.001, 100 - i * 0.001) for i in range(n)]
    path, _ = critical_path(spans)
    assert len(path) == n


def test_waterfall_rows_depth_first_with_orphans_and_cycles() -> None:
    spans = [ws("R", None, 0, 10), ws("b", "R", 5, 6), ws("a", "R", 1, 2), ws("o", "missing", 3, 4),
             ws("x", "y", 0, 1), ws("y", "x", 0, 1)]
    w = waterfall(spans)
    assert [(r["span_id"], r["depth"]) for r in w["rows"]] == [
        ("R", 0), ("a", 1), ("b", 1), ("o", 0), ("x", 0), ("y", 1)]
    assert w["root_span_id"] == "R"


@st.composite
def trees(draw: st.DrawFn) -> list[WSpan]:
    n = draw(st.integers(1, 25))
    spans = [WSpan("0", None, 0, draw(st.integers(0, 1000)))]
    for i in range(1, n):
        parent = spans[draw(st.integers(0, i - 1))]
        start = draw(st.integers(-50, 1100))
        spans.append(WSpan(str(i), parent.span_id, start, start + draw(st.integers(0, 500))))
    return spans


@settings(max_examples=300)
@given(trees())
def test_critical_path_tiles_the_root_and_is_a_chain(spans: list[WSpan]) -> None:
    path, segments = critical_path(spans)
    by_id = {s.span_id: s for s in spans}
    root = by_id["0"]
    assert path[0] == "0"
    # the segments tile the root's interval exactly, in time order, without overlap
    assert sum(b - a for _, a, b in segments) == root.end_ns - root.start_ns
    for (_, _, end), (_, start, _) in itertools.pairwise(segments):
        assert end == start
    if segments:
        assert segments[0][1] == root.start_ns and segments[-1][2] == root.end_ns
    on_path = set(path)
    assert {s for s, _, _ in segments} <= on_path
    for sid in path[1:]:
        assert by_id[sid].parent_id in on_path  # a chain of calls, not loose spans
        s = by_id[sid]
        assert s.start_ns <= root.end_ns  # a child starting after its parent ended is never on it


# -- bad input ----------------------------------------------------------------------------------------

def test_missing_db_is_a_one_line_error(tmp_path: Path) -> None:
    result = run("--db", str(tmp_path / "absent.duckdb"), "--html", str(tmp_path / "r.html"))
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "absent.duckdb" in result.output
    assert not (tmp_path / "r.html").exists()


def test_a_file_that_is_not_a_store_is_a_one_line_error(tmp_path: Path) -> None:
    import duckdb

    duckdb.connect(str(tmp_path / "other.duckdb")).close()
    result = run("--db", str(tmp_path / "other.duckdb"), "--html", str(tmp_path / "r.html"))
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "other.duckdb" in result.output


@pytest.mark.parametrize(("content", "reason"), [
    ("flows: [\n", "not YAML"), ("nope: {}\n", "expected a mapping with key 'flows'"),
    ('flows:\n  "not an operation": []\n', "is not an operation")])
def test_bad_flows_file_is_a_one_line_error(db: Path, tmp_path: Path, content: str, reason: str) -> None:
    spec = tmp_path / "flows.yaml"
    spec.write_text(content, encoding="utf-8")
    result = run("--db", str(db), "--html", str(tmp_path / "r.html"), "--flows", str(spec))
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and str(spec) in result.output and reason in result.output


def test_other_bad_inputs(db: Path, tmp_path: Path) -> None:
    html = str(tmp_path / "r.html")
    result = run("--db", str(db), "--html", html, "--flows", str(tmp_path / "absent.yaml"))
    assert result.exit_code == 1 and "absent.yaml: cannot read the flow spec" in result.output
    result = run("--db", str(db), "--html", str(tmp_path / "r.html"), "--trace", "f" * 32)
    assert result.exit_code == 1
    assert result.output == f"Error: --trace {'f' * 32}: no such trace in the store\n"
    result = run("--db", str(db), "--html", str(tmp_path / "no-dir" / "r.html"))
    assert result.exit_code == 1 and "cannot write the report" in result.output
    result = run("--db", str(db), "--html", str(tmp_path / "r.html"), "--tests", "x.json")
    assert result.exit_code == 2 and "--tests needs --handlers" in result.output


# -- the page in a real browser -----------------------------------------------------------------------

def test_harness_catches_console_errors_and_network_requests(tmp_path: Path) -> None:
    """The browser checks can fail: a page with an error, a console.error and a remote image."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><html><head><script>console.error("boom")</script></head><body>'
                    '<img src="http://127.0.0.1:9/x.png"><script>undefinedFunction()</script></body></html>',
                    encoding="utf-8")
    loaded = browser.load(page, tmp_path)
    assert any("boom" in line for line in loaded.console)
    assert any("undefinedFunction" in line for line in loaded.console)
    assert loaded.requests == ["http://127.0.0.1:9/x.png"]


def test_report_in_headless_chromium(full: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    page, report = full
    html_text = page.read_text(encoding="utf-8")
    # nothing to fetch: no remote src/href/url() anywhere in the page
    for needle in ('src="http', "src='http", 'href="http', "href='http", "url(http", "@import"):
        assert needle not in html_text
    loaded = browser.load(page, tmp_path)
    assert loaded.console == []  # no console message at all: the page logs nothing when it works
    assert loaded.requests == []
    assert 'data-errors="[]"' in loaded.dom  # the page's own window.onerror / console.error hook
    assert 'data-rendered="1"' in loaded.dom  # and its script ran to the end
    for name in SECTIONS:
        assert f'<section id="{name}">' in loaded.dom, name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in loaded.dom  # shown as text in the live DOM
    shot = browser.screenshot(page, tmp_path / "insights-report.png", tmp_path)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copyfile(shot, artifacts / "insights-report.png")
    assert report["waterfalls"]["items"]
