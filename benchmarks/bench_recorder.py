"""Flight recorder benchmarks.

1. Per-span cost of a 4-sector lap (5 spans) with the recorder off, on (memory only) and on (persistent,
   SQLite), measured in the same run, interleaved, until ``shutdown()`` has flushed everything (so the
   deferred work, off the application's path, is counted). Target: persistent / off <= 1.10.
2. ``GET /api/v1/flight-recorder/{id}`` latency against a real ``chronograph serve`` process with
   100,000 stored laps. Target: p99 < 5 ms.

Run: ``.venv/bin/python benchmarks/bench_recorder.py [--laps 2000] [--rounds 7] [--stored 100000]``
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

import httpx
from opentelemetry.sdk.trace import TracerProvider

import otel_chronograph as chrono
from otel_chronograph import Lap, LapEvent, SectorSpan
from otel_chronograph.recorder import FlightStore, get_recorder

SECTORS = ("init", "load", "exec", "format")


def run_laps(config: dict[str, object], laps: int) -> tuple[float, float]:
    """(wall, CPU) seconds per span for ``laps`` four-sector laps, from the first span to a flushed
    shutdown. CPU time is the process's, all threads (the deferred work included)."""
    provider = TracerProvider()
    proc = chrono.install(provider, config=config)
    c0 = time.process_time()
    t0 = time.perf_counter()
    for i in range(laps):
        with chrono.lap("faf score", tier="pro", session_id="conv-1", tracer_provider=provider) as lap:
            for name in SECTORS:
                with chrono.sector(name, tracer_provider=provider):
                    pass
            lap.event("Embedding Classifier", confidence=0.92, i=i)
    proc.shutdown()
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - c0
    rec = get_recorder()
    if config.get("recorder", {}).get("enabled") and rec is not None:  # type: ignore[union-attr]
        assert rec.store.count() >= min(laps, rec.store.max_records), "laps were not recorded"
        rec.store.close()
    spans = laps * (1 + len(SECTORS))
    return elapsed / spans, cpu / spans


def bench_overhead(laps: int, rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="chronograph-bench-"))
    configs = {
        "off": {"recorder": {"enabled": False}},
        "memory": {"recorder": {"enabled": True}},
        "persistent": {"recorder": {"enabled": True, "persistent": True, "path": str(tmp / "x.db")}},
    }
    for cfg in configs.values():  # warm up imports and caches
        run_laps(cfg, 200)
    wall: dict[str, list[float]] = {k: [] for k in configs}
    cpu: dict[str, list[float]] = {k: [] for k in configs}
    names = list(configs)
    for r in range(rounds):
        for name in names[r % 3:] + names[:r % 3]:  # rotate the order: no position advantage
            cfg = configs[name]
            if name == "persistent":
                cfg = {"recorder": {**cfg["recorder"], "path": str(tmp / f"r{r}.db")}}  # type: ignore[dict-item]
            w, c = run_laps(cfg, laps)
            wall[name].append(w)
            cpu[name].append(c)
    print(f"per-span cost, 4-sector laps x {laps}, medians of {rounds} interleaved rounds "
          "(until shutdown() has flushed):")
    for k in configs:
        w, c = statistics.median(wall[k]), statistics.median(cpu[k])
        rw = statistics.median(a / b for a, b in zip(wall[k], wall["off"], strict=True))
        rc = statistics.median(a / b for a, b in zip(cpu[k], cpu["off"], strict=True))
        print(f"  recorder {k:<10} wall {w * 1e6:7.2f} µs/span (x{rw:.3f} vs off)   "
              f"cpu {c * 1e6:7.2f} µs/span (x{rc:.3f} vs off)")
    ratio = statistics.median(a / b for a, b in zip(wall["persistent"], wall["off"], strict=True))
    print(f"  persistent / off (median of per-round ratios, wall) = {ratio:.3f} (target <= 1.10)")


def synthetic(i: int, now: int) -> Lap:
    start = now - 3_600_000_000_000 + i * 10_000
    total = random.randint(5, 400) * 1_000_000
    part = total // 5
    span_id = f"{i + 1:016x}"
    spans = [SectorSpan(n, n, f"{(i + 1) * 8 + k:016x}", span_id, start + k * part, start + (k + 1) * part)
             for k, n in enumerate(SECTORS)]
    sectors = {n: part / 1e6 for n in SECTORS}
    return Lap(request_id="req_" + span_id, trace_id=f"{i + 1:032x}", span_id=span_id,
               command=f"cmd-{i % 8}", timestamp=start // 1_000_000, start_ns=start, end_ns=start + total,
               lap_ms=total / 1e6, other_ms=part / 1e6, sectors=sectors, critical_path=sectors,
               critical_other_ms=part / 1e6, status="GREEN", error=False, tier="pro", customer=None,
               score=None, cost=Decimal("0.001"), spans=spans, session_id=f"conv-{i % 100}",
               events=[LapEvent("Embedding Classifier", start + part, part / 1e6, "init", "init",
                                {"confidence": 0.92})])


def bench_api(stored: int, requests: int, rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="chronograph-bench-api-"))
    db = tmp / "flight.db"
    now = time.time_ns()
    t0 = time.perf_counter()
    with FlightStore(db) as store:
        for lo in range(0, stored, 10_000):
            store.add_many(synthetic(i, now) for i in range(lo, min(lo + 10_000, stored)))
        assert store.count() == stored
    print(f"stored {stored} laps in {time.perf_counter() - t0:.1f}s ({db.stat().st_size / 1e6:.0f} MB)")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = str(Path(sys.executable).with_name("chronograph"))
    env = {k: v for k, v in os.environ.items() if k != "CHRONOGRAPH_API_TOKEN"}
    server = subprocess.Popen([exe, "serve", "--db", str(db), "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("server did not start")
            time.sleep(0.05)
        rng = random.Random(1)
        p50s, p99s = [], []
        # http.client on a kept-alive connection: a light client, so the figure is the server's.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

        def get(ident: str) -> bytes:
            conn.request("GET", f"/api/v1/flight-recorder/{ident}")
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 200, (resp.status, body[:200])
            return body

        for _ in range(300):  # warm up (the first request loads the per-command history)
            get(f"req_{rng.randrange(1, stored + 1):016x}")
        for _ in range(rounds):
            lat = []
            for _ in range(requests):
                ident = f"req_{rng.randrange(1, stored + 1):016x}"
                t = time.perf_counter()
                body = get(ident)
                lat.append(time.perf_counter() - t)
                assert ident.encode() in body[:40]
            lat.sort()
            p50s.append(lat[len(lat) // 2])
            p99s.append(lat[int(len(lat) * 0.99) - 1])
        conn.close()
        print(f"GET /api/v1/flight-recorder/{{id}} at {stored} stored laps, {requests} requests x {rounds} "
              f"rounds (medians): p50 {statistics.median(p50s) * 1e3:.2f} ms, "
              f"p99 {statistics.median(p99s) * 1e3:.2f} ms (target p99 < 5 ms)")
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--laps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--stored", type=int, default=100_000)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--skip-api", action="store_true")
    args = ap.parse_args()
    bench_overhead(args.laps, args.rounds)
    if not args.skip_api:
        bench_api(args.stored, args.requests, 5)


if __name__ == "__main__":
    main()
