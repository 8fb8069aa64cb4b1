"""Text rendering in the seed's layout, JSON, Chrome trace event export and folded stacks."""

from __future__ import annotations

import json
import re

from otel_chronograph.recorder import FlightRecord, folded_stacks, render_text, to_chrome_trace, to_json
from otel_chronograph.recorder._render import format_ms, format_share

from .helpers import synthetic_lap

START = 1_771_597_921_000_000_000  # 2026-02-20T14:32:01.000Z


def test_text_rendering_follows_the_seed_layout() -> None:
    record = FlightRecord.from_lap(synthetic_lap(1, lap_ms=2370.0, start_ns=START))
    text = render_text(record)
    expected_head = (
        "REQUEST TIMELINE: req_0000000000000001\n"
        "\n"
        "[14:32:01.000] ➜ Lap Start\n"
        "  Command: faf score\n"
        "  Session: conv-1\n"
        "  Tier: pro\n"
        "\n"
        "[14:32:01.000] ➜ init start\n"
        "\n"
        "[14:32:01.474] ➜ Embedding Classifier\n"
        "  Confidence: 0.92\n"
        "  Winner: complex\n"
        "  Sector: init\n"
        "\n"
        "[14:32:01.474] ➜ init end\n"
        "  Duration (ms): 474\n"
    )
    assert text.startswith(expected_head)
    assert "\n[14:32:03.370] ➜ Lap End\n  Status: GREEN\n" in text
    summary = text[text.index("SUMMARY:"):]
    assert summary.splitlines()[:7] == [
        "SUMMARY:", "  Total: 2370ms", "  Init: 474ms (20%)", "  Load: 474ms (20%)", "  Exec: 474ms (20%)",
        "  Format: 474ms (20%)", "  Other: 474ms (20%)"]
    blocks = re.findall(r"^\[\d\d:\d\d:\d\d\.\d{3}\] ➜ .+$", text, re.M)
    assert len(blocks) == len(record.events)


def test_text_shows_history_and_the_anomaly() -> None:
    record = FlightRecord.from_lap(synthetic_lap(0, lap_ms=500.0, start_ns=START))
    comparison = {"count": 20, "median_ms": 40.0, "p95_ms": 60.0, "ratio": 12.5, "factor": 10.0,
                  "anomaly": True}
    text = render_text(record, comparison)
    assert "  History: median 40.0ms, p95 60.0ms over 20 'faf score' laps (12.5× median)\n" in text
    assert "  ANOMALY: 12.5× the median (threshold 10×)\n" in text
    assert "ANOMALY" not in render_text(record, {**comparison, "anomaly": False})


def test_shares_and_times_are_formatted_like_the_seed() -> None:
    assert [format_share(p) for p in (50.6, 4.0, 0.42, 45.1, 0.0)] == ["51%", "4%", "0.4%", "45%", "0%"]
    assert [format_ms(m) for m in (2370.0, 45.5, 1.234, 0.2345)] == ["2370ms", "45.5ms", "1.23ms", "0.234ms"]


def test_json_export_is_serialisable_and_complete() -> None:
    record = FlightRecord.from_lap(synthetic_lap(3, start_ns=START))
    doc = json.loads(json.dumps(to_json(record, {"anomaly": False, "count": 1}, text=True)))
    assert doc["id"] == "req_0000000000000003" and doc["trace_id"] == f"{3:032x}"
    assert doc["conversation_id"] == "conv-1" and doc["cost"] == "0.001" and doc["anomaly"] is False
    assert doc["events"][0] == {"timestamp": "2026-02-20T14:32:01.000Z", "elapsed_ms": 0.0,
                                "stage": "Lap Start", "kind": "lap", "sector": None,
                                "details": {"command": "faf score", "session": "conv-1", "tier": "pro"}}
    assert doc["text"].startswith("REQUEST TIMELINE: req_0000000000000003\n")


def _check_chrome_trace(doc: dict[str, object]) -> list[dict[str, object]]:
    """Validate against the Trace Event Format (JSON object form)."""
    assert set(doc) >= {"traceEvents"}
    events = doc["traceEvents"]
    assert isinstance(events, list) and events
    for ev in events:
        assert isinstance(ev, dict)
        assert isinstance(ev["name"], str) and ev["ph"] in {"X", "i", "M"}
        assert isinstance(ev["pid"], int) and isinstance(ev["tid"], int)
        assert isinstance(ev["ts"], (int, float))
        if ev["ph"] == "X":
            assert isinstance(ev["dur"], (int, float)) and ev["dur"] >= 0
        if ev["ph"] == "i":
            assert ev["s"] in {"g", "p", "t"}
    # complete events on one track must nest (Perfetto's requirement)
    xs = [e for e in events if isinstance(e, dict) and e["ph"] == "X"]
    by_track: dict[tuple[object, object], list[tuple[float, float]]] = {}
    for e in xs:
        by_track.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"]))  # type: ignore[operator]
    for ivs in by_track.values():
        for a in ivs:
            for b in ivs:
                assert a[1] <= b[0] or b[1] <= a[0] or (a[0] <= b[0] and b[1] <= a[1]) or \
                    (b[0] <= a[0] and a[1] <= b[1])
    return xs


def test_chrome_trace_export_of_one_and_many_laps() -> None:
    one = to_chrome_trace(FlightRecord.from_lap(synthetic_lap(0, lap_ms=10.0, start_ns=START)))
    xs = _check_chrome_trace(json.loads(json.dumps(one)))
    assert [e["name"] for e in xs] == ["faf score", "init", "load", "exec", "format"]
    root = xs[0]
    assert root["ts"] == START / 1000 and root["dur"] == 10_000.0
    laps = [synthetic_lap(i, command=f"cmd{i}") for i in range(3)]
    many = _check_chrome_trace(to_chrome_trace(laps))
    assert {e["pid"] for e in many} == {1, 2, 3}


def test_parallel_spans_go_to_separate_tracks() -> None:
    lap = synthetic_lap(0, lap_ms=10.0, start_ns=START)
    from dataclasses import replace

    from otel_chronograph import SectorSpan

    overlapping = [SectorSpan("a", "a", "aa" * 8, lap.span_id, START, START + 6_000_000),
                   SectorSpan("b", "b", "bb" * 8, lap.span_id, START + 3_000_000, START + 9_000_000)]
    xs = _check_chrome_trace(to_chrome_trace(replace(lap, spans=overlapping)))
    tids = {e["name"]: e["tid"] for e in xs}
    assert tids["a"] != tids["b"]


def test_folded_stacks_weigh_self_time_in_microseconds() -> None:
    lap = synthetic_lap(0, lap_ms=10.0, start_ns=START)
    lines = dict(line.rsplit(" ", 1) for line in folded_stacks(lap).splitlines())
    assert lines == {"faf score": "2000", "faf score;init": "2000", "faf score;load": "2000",
                     "faf score;exec": "2000", "faf score;format": "2000"}
    doubled = dict(line.rsplit(" ", 1) for line in folded_stacks([lap, lap]).splitlines())
    assert doubled["faf score;init"] == "4000"
