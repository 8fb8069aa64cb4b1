"""Billing benchmark: lap-path cost with the outbox on vs off, and delivery throughput (v1, v2).

    .venv/bin/python benchmarks/bench_billing.py [--laps 2000] [--runs 5] [--events 3000]

1. Per-span cost of a 4-sector lap (5 spans) through the chronograph processor, billing off vs on, the
   two interleaved in the same process; billing on commits one outbox row per lap (SQLite WAL) on the
   lap's path and its sender delivers in the background to the fake Stripe (run in another process so its
   CPU is not charged to the application). Target: ratio ≤ 1.25.
2. Delivery throughput, events/s, draining an outbox into the local fake Stripe over HTTP: v1 (one event per
   request, one request in flight per customer, ``concurrency`` customers at once) and v2 (meter event
   stream, 100 events per request).
Prints the median of ``--runs`` runs for each figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from opentelemetry.sdk.trace import TracerProvider

import otel_chronograph as chrono
from otel_chronograph._config import MeterConfig
from otel_chronograph.billing import Outbox, Sender, StripeTransport, UsageRecord
from otel_chronograph.billing._outbox import now_ms

HERE = Path(__file__).resolve().parent
FAKE_DIR = HERE.parent / "tests" / "billing"
KEY = "sk_test_fake"
SERVER = """
import sys, threading
sys.path.insert(0, {dir!r})
from fake_stripe import FakeStripe
f = FakeStripe(any_customer=True).start()
print(f.url, flush=True)
sys.stdin.read()
"""


def start_fake() -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER.format(dir=str(FAKE_DIR))], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


def laps(provider: TracerProvider, n: int) -> float:
    t0 = time.perf_counter()
    for i in range(n):
        with chrono.lap("faf score", tier="pro", customer=f"cus_{i % 10}", tracer_provider=provider) as lap:
            for s in ("init", "load", "exec", "format"):
                with chrono.sector(s, tracer_provider=provider):
                    pass
        assert lap.telemetry is not None
    return (time.perf_counter() - t0) / (n * 5) * 1e6  # µs per span


def config(billing: bool, outbox: str, url: str, api: str = "v1") -> dict[str, object]:
    return {"display": {"split_times": False}, "recorder": {"enabled": False},
            "billing": {"enabled": billing, "rates": {"faf score": "0.001"},
                        "meter": {"outbox": outbox, "api": api, "api_base": url, "meter_events_base": url,
                                  "flush_interval_s": 1.0, "batch_size": 100}}}


def bench_lap_path(url: str, tmp: Path, n: int, runs: int) -> None:
    os.environ.pop("STRIPE_API_KEY", None)  # "commit": the outbox row only, no sender in this process
    off_p, commit_p, on_p = TracerProvider(), TracerProvider(), TracerProvider()
    off = chrono.install(off_p, config=config(False, str(tmp / "off.db"), url))
    commit = chrono.install(commit_p, config=config(True, str(tmp / "commit.db"), url))
    os.environ["STRIPE_API_KEY"] = KEY  # "on": the outbox row plus background delivery to the fake Stripe
    on = chrono.install(on_p, config=config(True, str(tmp / "on.db"), url))
    v2_p = TracerProvider()
    v2 = chrono.install(v2_p, config=config(True, str(tmp / "v2.db"), url, api="v2"))
    for p in (off_p, commit_p, on_p, v2_p):
        laps(p, 200)  # warm-up
    res: dict[str, list[float]] = {"off": [], "commit": [], "on": [], "v2": []}
    for _ in range(runs):
        res["off"].append(laps(off_p, n))
        res["commit"].append(laps(commit_p, n))
        res["on"].append(laps(on_p, n))
        res["v2"].append(laps(v2_p, n))
    on.shutdown()
    v2.shutdown()
    commit.shutdown()
    off.shutdown()
    st = Outbox(tmp / "on.db").status()
    med = {k: statistics.median(v) for k, v in res.items()}
    print(f"lap path (4-sector lap = 5 spans, {n} laps × {runs} runs, interleaved, medians):")
    print(f"  billing off                       {med['off']:7.1f} µs/span")
    print(f"  billing on, outbox commit only    {med['commit']:7.1f} µs/span   ratio "
          f"{statistics.median([c / o for c, o in zip(res['commit'], res['off'], strict=True)]):.3f}"
          "  (target ≤ 1.25)")
    print(f"  billing on, + v1 delivery         {med['on']:7.1f} µs/span   ratio "
          f"{statistics.median([c / o for c, o in zip(res['on'], res['off'], strict=True)]):.3f}"
          f"  (delivered {st.delivered}, pending {st.pending})")
    print(f"  billing on, + v2 stream delivery  {med['v2']:7.1f} µs/span   ratio "
          f"{statistics.median([c / o for c, o in zip(res['v2'], res['off'], strict=True)]):.3f}")


def bench_delivery(url: str, tmp: Path, api: str, n: int, runs: int) -> None:
    rates = []
    for r in range(runs):
        m = MeterConfig.model_validate({"outbox": str(tmp / f"{api}-{r}.db"), "api": api, "api_base": url,
                                        "meter_events_base": url, "batch_size": 100, "concurrency": 4,
                                        "request_timeout_s": 10})
        box = Outbox(m.outbox)
        t = now_ms()
        for i in range(n):
            box.add(UsageRecord(f"req_{api}{r}_{i:012x}", "faf_usage", f"cus_{i % 20}", 1000, t, "faf score",
                                "pro", Decimal("0.001"), 10.0, None))
        sender = Sender(box, m, StripeTransport(KEY, m))
        t0 = time.perf_counter()
        ok = sender.drain(120)
        dt = time.perf_counter() - t0
        assert ok and box.status().delivered == n, box.status()
        sender.shutdown(1)
        rates.append(n / dt)
    print(f"delivery {api}: {statistics.median(rates):8.0f} events/s (median of {runs}; runs: "
          f"{', '.join(f'{x:.0f}' for x in rates)})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--laps", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--events", type=int, default=3000)
    args = ap.parse_args()
    proc, url = start_fake()
    try:
        with tempfile.TemporaryDirectory() as d:
            bench_lap_path(url, Path(d), args.laps, args.runs)
            bench_delivery(url, Path(d), "v1", args.events, args.runs)
            bench_delivery(url, Path(d), "v2", args.events * 5, args.runs)
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(10)


if __name__ == "__main__":
    main()
