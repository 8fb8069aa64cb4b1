"""``coverage``: declared handlers vs production spans vs test-run spans (OTLP files and ``test``-labelled
spans), exact counts on a constructed case; malformed test files reported as ``file:line``."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from otel_chronograph.engine import SpanRecord
from otel_chronograph.insights._cli import insights
from otel_chronograph.insights._coverage import coverage, read_handlers
from otel_chronograph.insights._store import open_store

from ..engine.test_sources_agree import as_otlp_json
from .helpers import new_id, span, store

HANDLERS = """\
# handlers of the shop
web: GET /orders
web: POST /orders   # create an order

web: DELETE /orders/{id}
worker: process
web: GET /orders
"""


def sdk_spans(service: str, names: list[str]) -> list[ReadableSpan]:
    """Real SDK server spans (one trace each), as a test run would export them."""
    provider = TracerProvider(resource=Resource({"service.name": service}))
    raw = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(raw))
    tracer = provider.get_tracer("tests")
    for name in names:
        with tracer.start_as_current_span(name, kind=SpanKind.SERVER), \
                tracer.start_as_current_span("db.query", kind=SpanKind.CLIENT):
            pass
    spans = list(raw.get_finished_spans())
    provider.shutdown()
    return spans


def production() -> list[SpanRecord]:
    records: list[SpanRecord] = []
    for i in range(5):
        records.append(span("GET /orders", i, 10))
    for i in range(3):
        root = span("POST /orders", 10 + i, 20)
        records += [root, span("db.insert", 10 + i, 5, trace=root.trace_id, parent=root.span_id,
                               kind=SpanKind.CLIENT)]
    records += [span("process", 20 + i, 30, service="worker", kind=SpanKind.CONSUMER) for i in range(2)]
    records += [span("GET /admin", 30 + i, 5) for i in range(4)]
    records += [span("cron tick", 40, 5, kind=SpanKind.INTERNAL)]  # a root: handler-like, undeclared
    return records


@pytest.fixture
def case(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    db = tmp_path / "s.duckdb"
    store(db, production()).close()
    store(db, [span("GET /orders", 3600, 10)], label="test").close()
    handlers = tmp_path / "handlers.txt"
    handlers.write_text(HANDLERS)
    web = tmp_path / "web-tests.jsonl"
    web.write_text(json.dumps(as_otlp_json(sdk_spans("web", ["GET /orders", "GET /orders"]))) + "\n"
                   + "this is not json\n"
                   + json.dumps(as_otlp_json(sdk_spans("web", ["DELETE /orders/{id}"]))) + "\n")
    worker = tmp_path / "worker-tests.pb"  # the file exporter's format: proto (length-prefixed)
    body = TracesData(resource_spans=encode_spans(sdk_spans("worker", ["process"])).resource_spans)
    data = body.SerializeToString()
    worker.write_bytes(len(data).to_bytes(4, "big") + data)
    return db, handlers, [web, worker]


EXPECTED = {
    "declared": 4, "executed_in_production": 3, "executed_in_tests": 3,
    "handlers": [
        {"operation": "web: GET /orders", "service": "web", "span_name": "GET /orders",
         "production": 5, "tests": 3},
        {"operation": "web: POST /orders", "service": "web", "span_name": "POST /orders",
         "production": 3, "tests": 0},
        {"operation": "web: DELETE /orders/{id}", "service": "web", "span_name": "DELETE /orders/{id}",
         "production": 0, "tests": 1},
        {"operation": "worker: process", "service": "worker", "span_name": "process",
         "production": 2, "tests": 1},
    ],
    "undeclared": [{"operation": "web: GET /admin", "production": 4},
                   {"operation": "web: cron tick", "production": 1}],
}


def test_cli_counts_exactly_and_reports_the_bad_line(case: tuple[Path, Path, list[Path]]) -> None:
    db, handlers, tests = case
    res = CliRunner().invoke(insights, ["coverage", "--handlers", str(handlers), "--db", str(db), "--json",
                                        "--tests", str(tests[0]), "--tests", str(tests[1])])
    assert res.exit_code == 2, res.output
    assert json.loads(res.stdout) == EXPECTED
    assert f"{tests[0]}:2: not JSON" in res.stderr
    assert "1 malformed input(s)" in res.stderr


def test_cli_text(case: tuple[Path, Path, list[Path]]) -> None:
    db, handlers, tests = case
    res = CliRunner().invoke(insights, ["coverage", "--handlers", str(handlers), "--db", str(db),
                                        "--tests", str(tests[1])])
    assert res.exit_code == 0, res.output
    lines = res.stdout.splitlines()
    assert lines[0] == "4 declared handlers: 3 executed in production, 2 executed in tests"
    assert lines[2].split() == ["operation", "production", "tests"]
    assert lines[5].split() == ["web:", "DELETE", "/orders/{id}", "0", "0"]
    assert "undeclared handlers seen in production:" in res.stdout


def test_without_test_runs_the_test_figures_are_none(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    store(db, production()).close()
    conn = open_store(str(db), read_only=True)
    out = coverage(conn, ["web: GET /orders", "web: PUT /x"], None)
    assert (out["declared"], out["executed_in_production"], out["executed_in_tests"]) == (2, 1, None)
    assert [(h["production"], h["tests"]) for h in out["handlers"]] == [(5, None), (0, None)]
    # the same with an empty test run: zero, not None
    assert coverage(conn, ["web: GET /orders"], {})["executed_in_tests"] == 0
    assert coverage(conn, ["web: GET /orders"], {"web: GET /orders": 2})["handlers"][0]["tests"] == 2


def test_the_window_narrows_production_only(case: tuple[Path, Path, list[Path]]) -> None:
    db, handlers, _ = case
    res = CliRunner().invoke(insights, ["coverage", "--handlers", str(handlers), "--db", str(db), "--json",
                                        "--since", "2026-11-02T00:00:10Z", "--until", "2026-11-02T00:00:20Z"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [(h["production"], h["tests"]) for h in out["handlers"]] == [(0, 1), (3, 0), (0, 0), (0, 0)]
    assert out["undeclared"] == []


def test_undeclared_is_capped_most_run_first(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    store(db, [span(f"GET /{i}", i, 1) for i in range(5) for _ in range(i + 1)]).close()
    conn = open_store(str(db), read_only=True)
    out = coverage(conn, [], None, max_undeclared=3)
    assert out["undeclared"] == [{"operation": f"web: GET /{i}", "production": i + 1} for i in (4, 3, 2)]


def test_read_handlers(tmp_path: Path) -> None:
    path = tmp_path / "h.txt"
    path.write_text(HANDLERS + "api: GET /a#fragment\n")
    assert read_handlers(str(path)) == ["web: GET /orders", "web: POST /orders", "web: DELETE /orders/{id}",
                                        "worker: process", "api: GET /a#fragment"]


@pytest.mark.parametrize(("text", "where"), [
    ("web: GET /a\nGET /b\n", ":2: 'GET /b' is not an operation"),
    ("  # ok\n: GET /b\n", ":2: ': GET /b' is not an operation"),
    ("web:\n", ":1: 'web:' is not an operation"),
])
def test_bad_handlers_name_the_line(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "h.txt"
    path.write_text(text)
    with pytest.raises(click.ClickException) as err:
        read_handlers(str(path))
    assert err.value.message.startswith(f"{path}{where}")
    db = tmp_path / "s.duckdb"
    store(db, []).close()
    res = CliRunner().invoke(insights, ["coverage", "--handlers", str(path), "--db", str(db)])
    assert res.exit_code == 1 and "Traceback" not in res.output and f"{path}{where}" in res.output


def test_missing_files(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    store(db, [span("GET /orders", 0, 1)]).close()
    res = CliRunner().invoke(insights, ["coverage", "--handlers", str(tmp_path / "no.txt"), "--db", str(db)])
    assert res.exit_code == 1 and f"{tmp_path / 'no.txt'}: cannot read the handlers file" in res.output
    handlers = tmp_path / "h.txt"
    handlers.write_text("web: GET /orders\n")
    res = CliRunner().invoke(insights, ["coverage", "--handlers", str(handlers), "--db", str(db), "--json",
                                        "--tests", str(tmp_path / "no.jsonl")])
    assert res.exit_code == 2
    assert f"{tmp_path / 'no.jsonl'}: cannot read" in res.stderr
    assert json.loads(res.stdout)["executed_in_tests"] == 0


def test_many_test_files_are_counted_not_kept(tmp_path: Path) -> None:
    """Test-run files stream: 2,000 spans over 20 files become one count per operation."""
    files = []
    for f in range(20):
        path = tmp_path / f"run{f}.jsonl"
        trace_hex = f"{new_id():032x}"
        spans = [{"traceId": trace_hex, "spanId": f"{new_id():016x}", "name": f"GET /{i % 4}", "kind": 2,
                  "startTimeUnixNano": "1", "endTimeUnixNano": "2"} for i in range(100)]
        doc = {"resourceSpans": [{"resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "web"}}]}, "scopeSpans": [{"spans": spans}]}]}
        path.write_text(json.dumps(doc) + "\n")
        files.append(str(path))
    store(tmp_path / "s.duckdb", []).close()
    handlers = tmp_path / "h.txt"
    handlers.write_text("".join(f"web: GET /{i}\n" for i in range(5)))
    args = ["coverage", "--handlers", str(handlers), "--db", str(tmp_path / "s.duckdb"), "--json"]
    res = CliRunner().invoke(insights, args + [x for f in files for x in ("--tests", f)])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert [h["tests"] for h in out["handlers"]] == [500, 500, 500, 500, 0]
    assert out["executed_in_tests"] == 4
