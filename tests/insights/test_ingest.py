"""``insights ingest``: DuckDB's fast path stores exactly what the Python decoder would, idempotently;
malformed lines are reported as file:line and the rest is kept; every input kind SPEC.md lists."""

from __future__ import annotations

import gzip
import itertools
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
from click.testing import CliRunner
from google.protobuf.json_format import ParseDict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData
from opentelemetry.trace import SpanKind

from otel_chronograph._cli import main
from otel_chronograph.insights._store import _SPAN_COLUMNS, span_row
from otel_chronograph.sources import records_from_json
from tests.engine.test_sources_agree import as_otlp_json, run_in_process, span_trees

JSON_COLUMNS = ("attributes", "resource", "events")
_examples = itertools.count()


def ingest(*args: str) -> Any:
    return CliRunner().invoke(main, ["insights", "ingest", *args], catch_exceptions=False)


def stored(db: Path) -> dict[tuple[str, str], dict[str, Any]]:
    conn = duckdb.connect(str(db), read_only=True)
    rows = conn.execute(f"SELECT {', '.join(_SPAN_COLUMNS)} FROM spans").fetchall()
    conn.close()
    return {(r[0], r[1]): _normal(r) for r in rows}


def _normal(row: tuple[Any, ...]) -> dict[str, Any]:
    return {c: json.loads(v) if c in JSON_COLUMNS else v for c, v in zip(_SPAN_COLUMNS, row, strict=True)}


def expected(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """What the Python decoder and ``span_row`` make of the same documents."""
    out = {}
    for doc in docs:
        for record in records_from_json(doc):
            row = span_row(record)
            out[(row[0], row[1])] = _normal(row)
    return out


def write_lines(path: Path, docs: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def _typed_attributes(doc: dict[str, Any]) -> dict[str, Any]:
    """Every AnyValue kind OTLP JSON has, on the first span (the SDK alone never writes bytes)."""
    span = doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    span.setdefault("attributes", []).extend([
        {"key": "f", "value": {"doubleValue": 2.5}}, {"key": "b", "value": {"bytesValue": "AQI="}},
        {"key": "big", "value": {"intValue": "9007199254740993"}},
        {"key": "arr", "value": {"arrayValue": {"values": [{"intValue": "1"}, {"stringValue": "x"}]}}},
        {"key": "empty", "value": {}}, {"key": "ünï", "value": {"stringValue": "✓ \"quoted\""}}])
    span["kind"] = "SPAN_KIND_PRODUCER"
    return doc


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(trees=st.lists(span_trees(), min_size=1, max_size=3), trace_id=st.integers(1, 2**128 - 1))
def test_duckdb_fast_path_stores_what_the_python_decoder_does(tmp_path: Path, trees: list[Any],
                                                              trace_id: int) -> None:
    docs = [dict(as_otlp_json(run_in_process(nodes, trace_id)[1])) for nodes in trees]
    docs[0] = _typed_attributes(docs[0])
    name = f"t{next(_examples)}"  # tmp_path is shared by all examples
    src = write_lines(tmp_path / f"{name}.json", docs)
    db = tmp_path / f"{name}.duckdb"
    result = ingest(str(src), "--db", str(db))
    assert result.exit_code == 0, result.output
    got, want = stored(db), expected(docs)
    assert got.keys() == want.keys()
    for key, row in want.items():
        assert {c: v for c, v in got[key].items() if v != row[c]} == {}, (key, row)


def test_ingest_is_idempotent_and_counts_new_spans(tmp_path: Path) -> None:
    root = {"parent": -1, "start": 0, "end": 5, "name": "GET /a", "kind": SpanKind.SERVER, "attrs": {},
            "error": False, "events": []}
    docs = [dict(as_otlp_json(run_in_process([root] * 3, 7)[1]))]
    src = write_lines(tmp_path / "a.json", docs)
    db = tmp_path / "s.duckdb"
    first = ingest(str(src), "--db", str(db))
    again = ingest(str(src), str(src), "--db", str(db))
    assert first.exit_code == again.exit_code == 0
    assert "3 spans read (3 new)" in first.output
    assert "6 spans read (0 new)" in again.output
    assert len(stored(db)) == 3


def _sample_docs() -> list[dict[str, Any]]:
    nodes = [{"parent": -1, "start": 0, "end": 50, "name": "GET /a", "kind": SpanKind.SERVER,
              "attrs": {"k": "v"}, "error": True, "events": [(3, "milestone")]},
             {"parent": 0, "start": 5, "end": 20, "name": "SELECT 1", "kind": SpanKind.INTERNAL,
              "attrs": {}, "error": False, "events": []}]
    return [dict(as_otlp_json(run_in_process(nodes, 99 + i)[1])) for i in range(3)]


def test_malformed_lines_are_reported_as_file_line_and_the_rest_is_stored(tmp_path: Path) -> None:
    docs = _sample_docs()
    bad_id = json.loads(json.dumps(docs[2]))
    bad_id["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["spanId"] = "xyz"
    src = tmp_path / "mixed.json"
    src.write_text(json.dumps(docs[0]) + "\nnot json\n" + json.dumps({"foo": 1}) + "\n\n"
                   + json.dumps(docs[1]) + "\n" + json.dumps(bad_id) + "\n")
    db = tmp_path / "s.duckdb"
    result = ingest(str(src), str(tmp_path / "missing.json"), "--db", str(db))
    assert result.exit_code == 2
    assert f"{src}:2: not JSON" in result.output
    assert f"{src}:3: no resourceSpans" in result.output
    assert f"{src}:6: spanId is neither 16 hex digits nor base64" in result.output
    assert f"{tmp_path / 'missing.json'}: no such file or directory" in result.output
    assert "Traceback" not in result.output
    assert stored(db) == expected(docs[:2])


def test_gzip_protobuf_jaeger_v3_pretty_document_and_directories(tmp_path: Path) -> None:
    docs = _sample_docs()
    inputs = tmp_path / "in"
    (inputs / "nested").mkdir(parents=True)
    with gzip.open(inputs / "a.json.gz", "wt") as f:
        f.write(json.dumps(docs[0]) + "\n")
    message = ParseDict(_b64_ids(docs[1]), TracesData()).SerializeToString()
    (inputs / "nested" / "b.pb").write_bytes(len(message).to_bytes(4, "big") + message)
    (inputs / "c.json").write_text(json.dumps({"result": docs[2]}, indent=2))
    db = tmp_path / "s.duckdb"
    result = ingest(str(inputs), "--db", str(db))
    assert result.exit_code == 0, result.output
    assert stored(db) == expected(docs)


def _b64_ids(doc: dict[str, Any]) -> dict[str, Any]:
    """Protobuf's JSON mapping wants base64 ids (the Collector writes hex in its JSON files)."""
    import base64

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: base64.b64encode(bytes.fromhex(v)).decode()
                    if k in ("traceId", "spanId", "parentSpanId") and v else walk(v) for k, v in node.items()}
        return [walk(x) for x in node] if isinstance(node, list) else node
    return walk(doc)  # type: ignore[no-any-return]


def test_flight_recorder_sqlite_gives_laps_and_their_spans(tmp_path: Path) -> None:
    docs = _sample_docs()
    src = write_lines(tmp_path / "a.json", docs)
    recorder = tmp_path / "flight.sqlite"
    derive = CliRunner().invoke(main, ["derive", str(src), "--db", str(recorder), "--format", "json"])
    assert derive.exit_code == 0, derive.output
    laps = [json.loads(line) for line in derive.stdout.splitlines()]
    db = tmp_path / "s.duckdb"
    result = ingest(str(recorder), "--db", str(db))
    assert result.exit_code == 0, result.output
    conn = duckdb.connect(str(db), read_only=True)
    got = conn.execute("SELECT trace_id, command, status, lap_ms FROM laps ORDER BY trace_id").fetchall()
    spans = conn.execute("SELECT count(*), count(*) FILTER (WHERE parent_id IS NULL) FROM spans").fetchone()
    conn.close()
    assert sorted((lap["traceId"], lap["command"], lap["status"], lap["lapTime"]) for lap in laps) == got
    assert spans == (6, 3)


def test_a_store_another_process_writes_is_a_one_line_error(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    src = write_lines(tmp_path / "a.json", _sample_docs())
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys; c = duckdb.connect(sys.argv[1]); "
                               "print('ready', flush=True); sys.stdin.read()", str(db)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        result = CliRunner().invoke(main, ["insights", "ingest", str(src), "--db", str(db)])
    finally:
        holder.communicate("")
    # one process may hold a DuckDB file for writing: a second one is told so, without a traceback
    assert result.exit_code == 1
    assert "cannot open for writing the insights store" in result.output
    assert "Traceback" not in result.output


def test_laps_are_derived_from_whole_stored_traces_as_derive_does(tmp_path: Path) -> None:
    docs = _sample_docs()
    # the same traces split over two files and two runs: laps are derived from each whole trace
    first = write_lines(tmp_path / "a.json", docs[:2])
    second = write_lines(tmp_path / "b.json", docs[1:])
    db = tmp_path / "s.duckdb"
    assert ingest(str(first), "--db", str(db), "--laps").exit_code == 0
    result = ingest(str(second), "--db", str(db), "--laps")
    assert result.exit_code == 0, result.output
    assert "1 laps derived" in result.output  # only the trace that had none yet
    derive = CliRunner().invoke(main, ["derive", str(write_lines(tmp_path / "all.json", docs)),
                                       "--format", "json"])
    want = sorted((lap["traceId"], lap["command"], lap["status"], lap["lapTime"], lap["sectors"])
                  for lap in map(json.loads, derive.stdout.splitlines()))
    conn = duckdb.connect(str(db), read_only=True)
    got = conn.execute("SELECT trace_id, command, status, lap_ms, sectors FROM laps ORDER BY trace_id"
                       ).fetchall()
    conn.close()
    assert [(t, c, s, ms) for t, c, s, ms, _ in got] == [w[:4] for w in want]
    for (*_, sectors), w in zip(got, want, strict=True):  # stored by name, the response shape by position
        assert {f"s{i}_{k}": v for i, (k, v) in enumerate(json.loads(sectors).items(), start=1)} == w[4]
    assert len(got) == 3


def test_a_terminal_gets_a_progress_bar_and_a_pipe_one_line_per_file(tmp_path: Path) -> None:
    import os
    import re

    from tests.terminal import run_in_pty

    src = write_lines(tmp_path / "a.json", _sample_docs())
    size = f"{src.stat().st_size / 1000:.1f}"
    argv = [sys.executable, "-c", "from otel_chronograph._cli import main; main()", "insights", "ingest",
            str(src), "--db", str(tmp_path / "s.duckdb")]
    code, shown = run_in_pty(argv, env=os.environ)
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown)
    assert code == 0, shown
    assert "ingest 1 file(s)" in plain and f"{size}/{size} kB" in plain and "6 spans" in plain, plain
    assert f"ingest: {src}" not in plain  # the bar, not the per-file lines
    piped = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert piped.returncode == 0
    assert f"ingest: {src}: 6 spans" in piped.stderr and "\x1b" not in piped.stderr


def test_a_full_disk_is_a_one_line_error_not_a_traceback(tmp_path: Path) -> None:
    from tests.filesystems import small_filesystem
    from tests.insights.helpers import span, write_otlp_json

    src = write_otlp_json(tmp_path / "big.json", [span(f"GET /a{i}", i, 5.0, attributes={"n": i})
                                                   for i in range(40_000)])
    with small_filesystem(tmp_path / "small", "1m") as small:
        result = CliRunner().invoke(main, ["insights", "ingest", str(src), "--db", str(small / "s.duckdb")])
        assert result.exit_code == 1, result.output
        assert "the insights store failed" in result.output and "Traceback" not in result.output
