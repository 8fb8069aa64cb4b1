"""``chronograph laps`` and ``chronograph show`` reading the same store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from otel_chronograph._cli import main
from otel_chronograph.recorder import FlightStore

from .helpers import synthetic_lap


@pytest.fixture()
def db(tmp_path: Path) -> Path:
    path = tmp_path / "cli.db"
    with FlightStore(path) as store:
        store.add_many([synthetic_lap(i, lap_ms=float(i), status="RED" if i % 4 == 0 else "GREEN",
                                      command="faf chat" if i % 2 else "faf score") for i in range(1, 21)])
    return path


def test_laps_lists_newest_first_with_filters(db: Path) -> None:
    out = CliRunner().invoke(main, ["laps", "--db", str(db)])
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert len(lines) == 10
    assert f"req_{20:016x}" in lines[0] and "RED" in lines[0] and "faf score" in lines[0]
    out = CliRunner().invoke(main, ["laps", "--db", str(db), "--last", "50", "--command", "faf score",
                                    "--status", "red"])
    ids = [line.split()[2] for line in out.output.splitlines()]
    assert ids == [f"req_{i:016x}" for i in (20, 16, 12, 8, 4)]
    out = CliRunner().invoke(main, ["laps", "--db", str(db), "--last", "2", "--json"])
    assert [json.loads(line)["id"] for line in out.output.splitlines()] == [f"req_{20:016x}",
                                                                           f"req_{19:016x}"]


def test_show_prints_the_timeline_or_json(db: Path) -> None:
    rid = f"req_{5:016x}"
    out = CliRunner().invoke(main, ["show", rid, "--db", str(db)])
    assert out.exit_code == 0, out.output
    assert out.output.startswith(f"REQUEST TIMELINE: {rid}\n") and "SUMMARY:\n  Total: 5.00ms" in out.output
    out = CliRunner().invoke(main, ["show", f"{5:032x}", "--json", "--db", str(db)])
    doc = json.loads(out.output)
    assert doc["id"] == rid and doc["anomaly"] is False and "text" in doc
    out = CliRunner().invoke(main, ["show", rid, "--chrome-trace", "--db", str(db)])
    assert json.loads(out.output)["traceEvents"]
    out = CliRunner().invoke(main, ["show", rid, "--folded", "--db", str(db)])
    assert out.output.splitlines()[1] == "faf chat;init 1000"


def test_errors_name_the_problem(db: Path, tmp_path: Path) -> None:
    out = CliRunner().invoke(main, ["show", "req_nothing", "--db", str(db)])
    assert out.exit_code == 1 and "no flight record 'req_nothing'" in out.output
    out = CliRunner().invoke(main, ["laps", "--db", str(tmp_path / "missing.db")])
    assert out.exit_code == 1 and "no flight recorder database" in out.output
    out = CliRunner().invoke(main, ["tui", "--db", str(db), "--url", "http://x"])
    assert out.exit_code == 2 and "not both" in out.output
