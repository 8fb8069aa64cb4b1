"""Insights benchmark (issue 12): ingest and report time and peak memory for 1,000,000 spans.

Input: synthetic production telemetry (``insights_data.py``: 200,000 five-span traces over 14 days,
three services) written once as the Collector ``file`` exporter writes it (OTLP JSON lines, ~370 MB),
cached under ``~/.cache/otel-chronograph/bench-insights`` (it is input, not a result).

Measured, in alternating repetitions (median and spread printed):
- ``chronograph insights ingest FILE --db NEW`` in a subprocess: wall time, spans/s, peak RSS;
  the anchors in the same run: DuckDB counting the file's spans with its own JSON reader (the floor
  of any DuckDB-based ingest: it reads only the span ids) and Python ``json.loads`` of every line
  (what a Python ingester pays before it has decoded a single span), each in its own process;
- ``chronograph insights report --html --json`` on the ingested store: wall time and peak RSS,
  and each detector alone (anomalies, regressions, correlations, flows, baselines);
- memory: peak RSS of ingest at a quarter of the spans and at all of them (bounded: it should not
  grow with the input).

Run: ``python benchmarks/bench_insights.py [--spans N] [--repeat K]``. Deferred work: none; every
command runs to completion (the store is closed and flushed) inside the measured time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import insights_data

CLI = [sys.executable, "-c", "from otel_chronograph._cli import main; main()"]
CACHE = Path.home() / ".cache" / "otel-chronograph" / "bench-insights"


def data(spans: int) -> Path:
    traces = spans // insights_data.SPANS_PER_TRACE
    path = CACHE / f"otlp-{traces}-traces-seed7.jsonl"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        tmp = path.with_suffix(".tmp")
        insights_data.write_otlp_json(tmp, traces)
        tmp.rename(path)
        print(f"# generated {spans:,} spans in {time.perf_counter() - t:.0f} s -> {path}", flush=True)
    return path


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of a subprocess, from its own rusage (wait4)."""
    t = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t
    err = proc.stderr.read().decode() if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 1):  # flows check exits 1 when it finds deviations: that is a result
        raise SystemExit(f"{' '.join(argv[3:])} failed ({code}):\n{err[-2000:]}")
    return wall, usage.ru_maxrss / 1024


_DUCKDB_FLOOR = """
import sys, duckdb
duckdb.connect().execute('''SELECT count(*) FROM (SELECT unnest(s.spans) FROM (
    SELECT unnest(r.scopeSpans) AS s FROM (SELECT unnest(resourceSpans) AS r FROM read_json(?,
    format='newline_delimited',
    columns={'resourceSpans': 'STRUCT(scopeSpans STRUCT(spans STRUCT(traceId VARCHAR)[])[])[]'},
    maximum_object_size=268435456))))''', [sys.argv[1]]).fetchall()
"""
_PYTHON_FLOOR = """
import json, sys
with open(sys.argv[1], "rb") as f:
    for line in f:
        json.loads(line)
"""


def floor(code: str, path: Path) -> tuple[float, float]:
    """An anchor in its own process (so this one stays small: a fork's RSS starts as the parent's)."""
    return timed([sys.executable, "-c", code, str(path)])


def ingest(path: Path, db: Path) -> tuple[float, float]:
    for p in (db, db.with_suffix(".duckdb.wal")):
        p.unlink(missing_ok=True)
    return timed([*CLI, "insights", "ingest", str(path), "--db", str(db)])


def spread(values: list[float]) -> str:
    return f"median {statistics.median(values):.2f} (min {min(values):.2f}, max {max(values):.2f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spans", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    full = data(args.spans)
    quarter = data(args.spans // 4)
    print(f"# {args.spans:,} spans, {full.stat().st_size / 2**20:.0f} MiB of OTLP JSON lines; "
          f"{os.cpu_count()} CPUs; {args.repeat} alternating repetitions")
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.duckdb"
        walls: dict[str, list[float]] = {"ingest": [], "duckdb reads span ids": [],
                                         "python json.loads": []}
        rss: list[float] = []
        for _ in range(args.repeat):
            walls["duckdb reads span ids"].append(floor(_DUCKDB_FLOOR, full)[0])
            wall, peak = ingest(full, db)
            walls["ingest"].append(wall)
            rss.append(peak)
            walls["python json.loads"].append(floor(_PYTHON_FLOOR, full)[0])
        q_wall, q_rss = ingest(quarter, Path(tmp) / "quarter.duckdb")
        ing = statistics.median(walls["ingest"])
        print("\n## ingest")
        for name, values in walls.items():
            print(f"{name:>22}: {spread(values)} s  ratio {statistics.median(values) / ing:.2f} of ingest")
        print(f"{'spans/s':>18}: {args.spans / ing:,.0f} (target >= 50,000)")
        print(f"{'peak RSS':>18}: {statistics.median(rss):.0f} MiB at {args.spans:,} spans; "
              f"{q_rss:.0f} MiB at {args.spans // 4:,} spans ({q_wall:.1f} s)")
        print(f"{'store size':>18}: {db.stat().st_size / 2**20:.0f} MiB")

        print("\n## report and detectors on the ingested store")
        spec = Path(tmp) / "flows.yaml"
        spec.write_text('flows:\n  "web: GET /orders/{id}": [auth, payments.charge]\n'
                        '  "payments: charge": [SELECT payments]\n')
        commands = {
            "report --html --json": ["report", "--html", str(Path(tmp) / "r.html"), "--json",
                                     str(Path(tmp) / "r.json"), "--flows", str(spec)],
            "anomalies": ["anomalies", "--json"], "regressions": ["regressions", "--json"],
            "correlations": ["correlations", "--json"],
            "flows check": ["flows", "check", "--spec", str(spec)],
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, argv in commands.items():
                results[name].append(timed([*CLI, "insights", *argv, "--db", str(db)]))
        for name, runs in results.items():
            print(f"{name:>22}: {spread([w for w, _ in runs])} s, peak RSS "
                  f"{statistics.median([r for _, r in runs]):.0f} MiB"
                  + ("  (target <= 30 s)" if name.startswith("report") else ""))


if __name__ == "__main__":
    main()
