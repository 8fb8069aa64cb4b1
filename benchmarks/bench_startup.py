"""Start-up benchmark (issue 10): what ``import otel_chronograph`` plus ``install()`` adds to a process.

Each repetition starts fresh interpreters, alternating:
- baseline: import the OpenTelemetry SDK and make a TracerProvider with a BatchSpanProcessor;
- chronograph: the same, then ``import otel_chronograph`` and ``install(provider, span_processors=[bsp])``
  with billing off (the defaults otherwise: metrics, in-memory flight recorder).
Wall time of the whole process (start to exit) and, from inside, the time of the chronograph part alone.
It also checks which optional heavy modules got imported (none should: stripe, starlette, uvicorn,
textual, duckdb).

Run: ``python benchmarks/bench_startup.py [--reps 15]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

HEAVY = ("stripe", "starlette", "uvicorn", "textual", "duckdb", "rich")

BASE = """
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter
provider = TracerProvider(shutdown_on_exit=False)
bsp = BatchSpanProcessor(ConsoleSpanExporter())
"""

CHRONO = BASE + """
import sys, time, json
t0 = time.perf_counter()
import otel_chronograph as chrono
t1 = time.perf_counter()
chrono.install(provider, span_processors=[bsp], config={"billing": {"enabled": False}})
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "install_s": t2 - t1,
                  "heavy": [m for m in HEAVY if m in sys.modules]}))
""".replace("HEAVY", repr(HEAVY))


def once(code: str) -> tuple[float, str]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=120)
    return time.perf_counter() - t0, out.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=15)
    args = ap.parse_args(argv)
    once(BASE)  # warm the OS file cache and the .pyc files
    once(CHRONO)
    base: list[float] = []
    chrono: list[float] = []
    inner: list[dict[str, float]] = []
    heavy: set[str] = set()
    for _ in range(args.reps):
        base.append(once(BASE)[0])
        wall, out = once(CHRONO)
        chrono.append(wall)
        info = json.loads(out.strip().splitlines()[-1])
        heavy.update(info.pop("heavy"))
        inner.append(info)
    mb, mc = statistics.median(base), statistics.median(chrono)
    imp = statistics.median(i["import_s"] for i in inner)
    ins = statistics.median(i["install_s"] for i in inner)
    print(f"python {sys.version.split()[0]}; {args.reps} alternating repetitions, fresh interpreters")
    print(f"process wall: SDK + BSP {mb * 1e3:.1f} ms (spread {min(base) * 1e3:.1f}-{max(base) * 1e3:.1f}), "
          f"with chronograph {mc * 1e3:.1f} ms (spread {min(chrono) * 1e3:.1f}-{max(chrono) * 1e3:.1f}); "
          f"x{mc / mb:.2f}, +{(mc - mb) * 1e3:.1f} ms")
    print(f"inside the process: import otel_chronograph {imp * 1e3:.1f} ms, install() {ins * 1e3:.1f} ms "
          f"(medians)")
    print(f"heavy optional modules imported: {sorted(heavy) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
