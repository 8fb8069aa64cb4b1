"""Instructions per lap, counted by callgrind: the deterministic figure behind issue 10's rounds.

Wall and CPU ratios on a shared 2-core machine swing more than the effects being measured, and a
callgrind run of ``bench_web.py`` is not a fair proxy either: its threads are serialised, and at
valgrind's speed the deferred worker drains its queue every few requests instead of every ~150. This
driver runs one web-like lap per iteration (a SERVER root with 10 attributes, 3 SQLite CLIENT children,
2 ASGI "http send" children) through a real ``TracerProvider`` in one thread: the next processor is a
``SimpleSpanProcessor``, and the deferred sinks run in the same thread every ``--queued`` laps (default
150, what the queue holds natively at ~1 ms per request), so the garbage collector sees what it sees in
production.

Modes: ``base`` (SDK alone), ``off`` (chronograph installed, ``enabled: false``), ``nomet`` (no metrics,
no recorder), ``norec`` (metrics, no recorder), ``chrono`` (defaults).

``--shape core`` runs bench_core.py's lap (a) instead: a root and 4 sectors, with bench_core's
configuration (annotation and metrics on, no recorder).

Run: ``python benchmarks/cg_lap.py count chrono`` (needs valgrind): per-lap instructions of N=1000 laps
minus N=0, so start-up cancels out. ``python benchmarks/cg_lap.py run MODE N`` is what valgrind runs.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind

sys.path.insert(0, str(Path(__file__).parent))
import bench_core
import bench_web

import otel_chronograph as chrono
from otel_chronograph import _pipeline
from otel_chronograph._config import load_config
from otel_chronograph.sources import ChronographProcessor

MODES = ("base", "off", "nomet", "norec", "chrono")
ATTRS = {"http.scheme": "http", "http.host": "bench", "net.host.port": 80, "http.flavor": "1.1",
         "http.target": "/score/player1", "http.url": "http://bench/score/player1", "http.method": "GET",
         "http.user_agent": "python-httpx", "http.server_name": "bench", "http.route": "/score/{name}"}
QUERY = {"db.system": "sqlite", "db.statement": "SELECT score, team FROM scores WHERE name = ?"}


def laps(mode: str, n: int, queued: int, shape: str = "web") -> None:
    provider = TracerProvider(shutdown_on_exit=False)
    mp = MeterProvider(metric_readers=[PeriodicExportingMetricReader(
        bench_web.DiscardMetrics(), export_interval_millis=600_000)], shutdown_on_exit=False)
    nxt = SimpleSpanProcessor(bench_web.DiscardSpans())
    if mode == "base":
        provider.add_span_processor(nxt)
    else:
        config: dict[str, Any] = {"enabled": mode != "off"} if shape == "web" else dict(bench_core.CONFIG)
        if mode in ("nomet", "norec"):
            config["recorder"] = {"enabled": False}
        if mode == "nomet":
            proc = ChronographProcessor(load_config(config), [nxt], mp, metrics_enabled=False, health=False)
            provider.add_span_processor(proc)
        else:
            proc = chrono.install(provider, span_processors=[nxt], meter_provider=mp, config=config)
        sinks = list(proc.engine.deferred.sinks)
        waiting: list[Any] = []

        settle = getattr(_pipeline, "_settle", None)  # None: code from before round 3

        def publish(lap: Any) -> None:  # the deferred queue, drained in this thread every `queued` laps
            if settle is not None:
                settle(lap)
            waiting.append(lap)
            if len(waiting) >= queued:
                for queued_lap in waiting:
                    for sink in sinks:
                        sink(queued_lap)
                waiting.clear()

        proc.engine.publish = publish  # type: ignore[method-assign]
    if shape == "core":
        bench_core.workload(provider, n)
        n = 0
    tracer = provider.get_tracer("bench")
    for _ in range(n):
        with tracer.start_as_current_span("GET /score/{name}", kind=SpanKind.SERVER,
                                          attributes=ATTRS) as root:
            for _ in range(3):
                with tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT, attributes=QUERY):
                    pass
            for event in ("http.response.start", "http.response.body"):
                with tracer.start_as_current_span("GET /score/{name} http send",
                                                  attributes={"asgi.event.type": event}):
                    pass
            root.set_attribute("http.status_code", 200)
    provider.shutdown()
    mp.shutdown()


def instructions(mode: str, n: int, queued: int, shape: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
                        __file__, "run", mode, str(n), "--queued", str(queued), "--shape", shape],
                       env={**os.environ, "PYTHONHASHSEED": "0"}, check=True, capture_output=True)
        found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        if found is None:
            raise RuntimeError("no instruction total in callgrind's output")
        return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=("count", "run"))
    ap.add_argument("mode", choices=MODES)
    ap.add_argument("n", type=int, nargs="?", default=1000)
    ap.add_argument("--queued", type=int, default=150, help="laps the deferred queue holds (default 150)")
    ap.add_argument("--shape", choices=("web", "core"), default="web")
    args = ap.parse_args(argv)
    if args.what == "run":
        laps(args.mode, 100, args.queued, args.shape)  # warm-up: imports, caches
        gc.collect()
        if args.n:
            laps(args.mode, args.n, args.queued, args.shape)
        return 0
    total, start_up = (instructions(args.mode, n, args.queued, args.shape) for n in (args.n, 0))
    per_lap = (total - start_up) / args.n
    print(f"{args.shape} {args.mode}: {per_lap:,.0f} instructions per lap ({args.n} laps, "
          f"{args.queued} queued)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
