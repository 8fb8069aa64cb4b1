"""``chronograph derive`` as a user runs it: a real subprocess on OTLP JSON files (plain, gzip, zstd,
one document, a Jaeger v3 response), malformed lines reported as file:line, exit 2, --db records."""

from __future__ import annotations

import gzip
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import zstandard
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

import otel_chronograph as chrono

from .test_sources_agree import _hex_ids

CHRONOGRAPH = [str(Path(sys.executable).parent / "chronograph")]


def make_spans(n_laps: int, command: str = "faf score") -> tuple[list[ReadableSpan], list[chrono.Lap]]:
    """Real SDK laps with two sectors each; returns the raw spans and the in-process laps."""
    provider = TracerProvider(resource=Resource({"service.name": "cli-svc"}))
    raw = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(raw))
    proc = chrono.install(provider, config={"recorder": {"enabled": False}}, span_processors=[])
    laps: list[chrono.Lap] = []
    proc.add_sink(laps.append, deferred=False)
    for i in range(n_laps):
        with chrono.lap(command, tier="pro", customer=f"cus_{i}", tracer_provider=provider):
            with chrono.sector("init", tracer_provider=provider):
                pass
            with provider.get_tracer("t").start_as_current_span("SELECT", kind=SpanKind.CLIENT,
                                                                 attributes={"db.system": "sqlite"}):
                pass
    spans = list(raw.get_finished_spans())
    provider.shutdown()
    return spans, laps


def otlp_line(spans: list[ReadableSpan]) -> str:
    return json.dumps(_hex_ids(MessageToDict(encode_spans(spans))))


def derive(*args: str, check: int | None = 0) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*CHRONOGRAPH, "derive", *args], capture_output=True, text=True, timeout=120)
    if check is not None:
        assert proc.returncode == check, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def by_id(stdout: str) -> dict[str, dict[str, Any]]:
    return {d["requestId"]: d for d in map(json.loads, stdout.splitlines())}


def test_file_exporter_lines_give_the_in_process_laps(tmp_path: Path) -> None:
    spans, laps = make_spans(4)
    path = tmp_path / "traces.jsonl"
    # As the Collector writes them: batches of spans per line, a trace split across lines.
    path.write_text("\n".join(otlp_line(spans[i:i + 3]) for i in range(0, len(spans), 3)) + "\n")
    out = by_id(derive("--format", "json", str(path)).stdout)
    assert set(out) == {lap.request_id for lap in laps}
    for lap in laps:
        assert out[lap.request_id] == {**lap.to_json(), "service": "cli-svc"}


def test_malformed_lines_are_reported_and_the_rest_still_derived(tmp_path: Path) -> None:
    spans, laps = make_spans(2)
    path = tmp_path / "traces.jsonl"
    path.write_text("\n".join([otlp_line(spans[:4]), "{not json", '{"resourceSpans": 3}',
                               '{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "zz"}]}]}]}',
                               otlp_line(spans[4:])]) + "\n")
    proc = derive("--format", "json", str(path), check=2)
    assert set(by_id(proc.stdout)) == {lap.request_id for lap in laps}
    lines = proc.stderr.splitlines()
    assert any(line.startswith(f"{path}:2: not JSON") for line in lines), proc.stderr
    assert any(line.startswith(f"{path}:3: resourceSpans must be a list") for line in lines), proc.stderr
    assert any(line.startswith(f"{path}:4: traceId") for line in lines), proc.stderr
    assert "3 malformed input(s)" in proc.stderr


def test_gzip_zstd_single_document_and_jaeger_v3(tmp_path: Path) -> None:
    spans, laps = make_spans(2)
    expected = {lap.request_id for lap in laps}
    line = otlp_line(spans)
    (tmp_path / "a.jsonl.gz").write_bytes(gzip.compress(line.encode() + b"\n"))
    (tmp_path / "b.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(line.encode() + b"\n"))
    (tmp_path / "c.json").write_text(json.dumps(json.loads(line), indent=2))  # one pretty document
    (tmp_path / "d.json").write_text(json.dumps({"result": json.loads(line)}))  # Jaeger /api/v3/traces
    for name in ("a.jsonl.gz", "b.jsonl.zst", "c.json", "d.json"):
        assert set(by_id(derive("--format", "json", str(tmp_path / name)).stdout)) == expected, name


def test_missing_file_and_bad_config_are_one_line_errors(tmp_path: Path) -> None:
    proc = derive(str(tmp_path / "nope.jsonl"), check=2)
    assert proc.stderr.startswith(f"{tmp_path / 'nope.jsonl'}: cannot read")
    bad = tmp_path / "bad.yaml"
    bad.write_text("chronograph:\n  laps: {scope: everything}\n")
    good = tmp_path / "t.jsonl"
    good.write_text(otlp_line(make_spans(1)[0]) + "\n")
    proc = derive("--config", str(bad), str(good), check=1)
    assert "chronograph.laps.scope" in proc.stderr


def test_text_format_escapes_terminal_control_characters(tmp_path: Path) -> None:
    spans, _ = make_spans(1, command="evil\x1b[2J\nLAP TIME")
    path = tmp_path / "t.jsonl"
    path.write_text(otlp_line(spans) + "\n")
    out = derive(str(path)).stdout
    assert "\x1b" not in out and out.count("\n") == 1
    assert "evil\\x1b[2J\\nLAP TIME" in out


def test_db_keeps_flight_records_for_laps_and_show(tmp_path: Path) -> None:
    spans, laps = make_spans(3)
    path = tmp_path / "t.jsonl"
    path.write_text(otlp_line(spans) + "\n")
    db = tmp_path / "laps.db"
    derive("--db", str(db), str(path))
    listed = subprocess.run([*CHRONOGRAPH, "laps", "--db", str(db), "--json"], capture_output=True,
                            text=True, timeout=60, check=True).stdout
    assert {lap.request_id for lap in laps} <= set(listed.replace('"', " ").split())


def test_db_keeps_laps_older_than_the_retention_across_runs(tmp_path: Path) -> None:
    """An export's laps are older than recorder.retention_hours (24 h): a batch run must not purge them,
    neither its own nor an earlier run's (a purge racing the writes deleted some, found in CI)."""
    from .test_sources_agree import T0, run_in_process

    assert (time.time_ns() - 48 * 3600 * 10**9) > T0
    node = {"parent": -1, "start": 0, "end": 50, "name": "GET /old", "kind": SpanKind.SERVER, "attrs": {},
            "error": False, "events": []}
    db = tmp_path / "laps.db"
    ids: set[str] = set()
    for run in range(2):
        files = []
        for i in range(3):
            in_process, spans = run_in_process([node], 7 + i)
            ids.add(in_process[0].request_id)
            files.append(otlp_line(spans))
        path = tmp_path / f"run{run}.jsonl"
        path.write_text("\n".join(files) + "\n")
        derive("--db", str(db), str(path))
    conn = sqlite3.connect(db)
    stored = {rid for (rid,) in conn.execute("SELECT request_id FROM flight_records")}
    conn.close()
    assert len(ids) == 6
    assert stored == ids
