"""Gateway benchmarks (issue 11). Figures are measured against anchors in the same run.

(a) ``telemetrygen`` -> ``chronograph gateway`` (``nop`` exporter) at increasing span rates, the gateway
    pinned to one core (``taskset``), telemetrygen to the other: spans/s accepted per rate, spans refused
    with backpressure, the gateway's CPU per span, the lap delay after a trace's last span (p50/p99 from
    the ``chronograph.gateway.lap_delay`` histogram, linear within buckets) and peak RSS (VmHWM). A rate
    is *sustained* when every offered span was accepted with no refusal and the pending traces drained.
(b) the same loads through the built Collector with ``groupbytrace`` (collector-config/groupbytrace.yaml,
    ``wait_duration`` = the gateway's ``decision_wait``, ``nop`` exporter) on the same core: the anchor
    for what holding whole traces costs in Go, without deriving anything.
(c) in an application: the CPU cost of the SDK with a BatchSpanProcessor exporting OTLP/gRPC to the
    gateway, against the same SDK exporting to a no-op OTLP receiver (the baseline) and against running
    chronograph's processor in the app; medians of alternating repetitions, export flushed by shutdown.

Run: ``python benchmarks/bench_gateway.py [--quick]`` (needs .peers/bin: scripts/build-peers.sh).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

import peers  # noqa: E402

SPANS_PER_TRACE = 10  # telemetrygen: one root and --child-spans 9
DECISION_WAIT = "1s"
GATEWAY_CORE, LOAD_CORE = "0", "1"


def taskset(core: str, argv: list[str]) -> list[str]:
    return ["taskset", "-c", core, *argv] if shutil.which("taskset") and (os.cpu_count() or 1) > 1 else argv


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def samples(text: str, name: str) -> dict[str, float]:
    """label-string -> value of every sample of ``name`` (or ``name_total``) in Prometheus text."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if any(line.startswith(n + "{") or line.startswith(n + " ") for n in (name, name + "_total")):
            head, _, value = line.rpartition(" ")
            out[head] = float(value)
    return out


def total(text: str, name: str) -> float:
    return sum(samples(text, name).values())


def buckets(text: str, name: str) -> list[tuple[float, float]]:
    """Cumulative (le, count) of a histogram, summed over its series."""
    acc: dict[float, float] = {}
    for head, value in samples(text, name + "_bucket").items():
        le = re.search(r'le="([^"]+)"', head)
        if le:
            bound = float("inf") if le.group(1) == "+Inf" else float(le.group(1))
            acc[bound] = acc.get(bound, 0.0) + value
    return sorted(acc.items())


def quantile(before: list[tuple[float, float]], after: list[tuple[float, float]], q: float) -> float:
    """The q-quantile of the observations between two scrapes, linear within a bucket."""
    prev = dict(before)
    cum = [(le, count - prev.get(le, 0.0)) for le, count in after]
    n = cum[-1][1] if cum else 0
    if not n:
        return float("nan")
    rank = q * n
    low_le, low_count = 0.0, 0.0
    for le, count in cum:
        if count >= rank:
            if le == float("inf"):
                return low_le
            width = count - low_count
            return low_le + (le - low_le) * ((rank - low_count) / width if width else 1.0)
        low_le, low_count = le, count
    return cum[-1][0]


# -- (a) and (b): telemetrygen into the gateway and into the Collector --------------------------------


def gateway_config(workdir: Path) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "bench-gateway.yaml"
    path.write_text(f"""\
receivers:
  otlp:
    protocols:
      grpc: {{endpoint: "${{env:CHRONOGRAPH_GATEWAY_GRPC_ENDPOINT}}", max_recv_msg_size_mib: 64}}
      http: {{endpoint: "${{env:CHRONOGRAPH_GATEWAY_HTTP_ENDPOINT}}"}}
processors:
  chronograph:
    laps: {{scope: trace, decision_wait: {DECISION_WAIT}, max_pending_traces: 50000}}
    sectors:
      rules:
        - {{name_from: service.name, match: {{kind: SERVER}}}}
        - {{name: backend, match: {{kind: CLIENT}}}}
    recorder: {{enabled: false}}
exporters:
  nop: {{}}
service:
  pipelines:
    traces: {{receivers: [otlp], processors: [chronograph], exporters: [nop]}}
  telemetry: {{metrics: {{endpoint: "${{env:CHRONOGRAPH_GATEWAY_TELEMETRY_ENDPOINT}}"}}}}
""")
    return path


def telemetrygen(endpoint: str, spans_per_s: int, seconds: float) -> tuple[int, float]:
    """Offer ``spans_per_s`` for ``seconds``; (spans offered, wall seconds).

    telemetrygen's ``--rate`` is spans per second per worker (one worker reaches about 1,000 spans/s
    here), and all workers of a process share one batch span processor with one export in flight: a
    single process measures the server's latency more than its throughput. So the load is spread over
    processes of at most 5,000 spans/s each, as many apps would send it."""
    binary = peers._require_binary(peers.PEERS_BIN / "telemetrygen")
    processes = max(1, -(-spans_per_s // 5000))
    per_process = spans_per_s / processes
    workers = max(1, -(-int(per_process) // 1000))
    argv = [str(binary), "traces", "--otlp-endpoint", endpoint, "--otlp-insecure",
            "--rate", f"{per_process / workers:.3f}", "--workers", str(workers),
            "--duration", f"{seconds}s", "--child-spans", str(SPANS_PER_TRACE - 1), "--service", "bench",
            "--batch-size", "512"]
    t0 = time.monotonic()
    procs = [subprocess.Popen(taskset(LOAD_CORE, argv), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True) for _ in range(processes)]
    outputs = [p.communicate(timeout=seconds + 120)[1] for p in procs]
    wall = time.monotonic() - t0
    for p, err in zip(procs, outputs, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"telemetrygen failed ({p.returncode}): {err[-2000:]}")
    traces = sum(int(n) for err in outputs
                 for n in re.findall(r'traces generated\s+\{"worker": \d+, "traces": (\d+)\}', err))
    return traces * SPANS_PER_TRACE, wall


def run_gateway_rates(workdir: Path, rates: list[int], seconds: float) -> list[dict[str, Any]]:
    gw = peers.start_gateway(workdir, gateway_config(workdir), prefix=taskset(GATEWAY_CORE, []))
    rows = []
    try:
        assert gw.proc is not None
        pid = gw.proc.pid
        for rate in rates:
            before = gw.scrape()
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            offered, wall = telemetrygen(gw.otlp_grpc_endpoint, rate, seconds)
            peers.wait_until(lambda: total(gw.scrape(), "chronograph_pending_traces") == 0, 60,
                             "the gateway to decide every trace")
            cpu, elapsed = cpu_seconds(pid) - cpu0, time.monotonic() - t0
            after = gw.scrape()
            received = total(after, "chronograph_gateway_spans_received_total") - \
                total(before, "chronograph_gateway_spans_received_total")
            refused = total(after, "chronograph_gateway_rejected_spans_total") - \
                total(before, "chronograph_gateway_rejected_spans_total")
            laps = total(after, "chronograph_laps_total") - total(before, "chronograph_laps_total")
            hist_before = buckets(before, "chronograph_gateway_lap_delay_milliseconds")
            hist_after = buckets(after, "chronograph_gateway_lap_delay_milliseconds")
            rows.append({"rate": rate, "offered": offered, "received": received, "refused": refused,
                         "laps": laps, "wall": wall, "cpu": cpu, "elapsed": elapsed,
                         "p50": quantile(hist_before, hist_after, 0.5),
                         "p99": quantile(hist_before, hist_after, 0.99), "rss": peak_rss_mib(pid)})
    finally:
        gw.stop()
    return rows


def run_collector_rates(workdir: Path, rates: list[int], seconds: float) -> list[dict[str, Any]]:
    config = peers.COLLECTOR_CONFIG_DIR / "groupbytrace.yaml"
    ports = peers.collector_ports()
    env = {**peers.collector_env(ports, None, None), "OTELCOL_GROUPBYTRACE_WAIT": DECISION_WAIT,
           "OTELCOL_MEMORY_LIMIT_MIB": "2048"}
    collector = peers.Collector(name="otelcol-groupbytrace",
                                argv=taskset(GATEWAY_CORE, [str(peers.collector_binary()), "--config",
                                                            str(config)]),
                                workdir=workdir, env=env, ports=ports)
    collector.start()
    metrics_url = f"http://127.0.0.1:{ports['telemetry']}/metrics"

    def scrape() -> str:
        status, body = peers.http_get(metrics_url)
        return body.decode() if status == 200 else ""

    accepted_name = "otelcol_receiver_accepted_spans"
    refused_name = "otelcol_receiver_refused_spans"

    def released() -> bool:
        text = scrape()
        return total(text, "otelcol_processor_groupbytrace_spans_released") >= total(text, accepted_name)

    rows = []
    try:
        collector.wait_http_ok(f"http://127.0.0.1:{ports['health']}/", 60)
        assert collector.proc is not None
        pid = collector.proc.pid
        for rate in rates:
            before = scrape()
            cpu0, t0 = cpu_seconds(pid), time.monotonic()
            offered, wall = telemetrygen(collector.otlp_grpc_endpoint, rate, seconds)
            peers.wait_until(released, 60, "groupbytrace to release every trace")
            cpu, elapsed = cpu_seconds(pid) - cpu0, time.monotonic() - t0
            after = scrape()
            rows.append({"rate": rate, "offered": offered,
                         "received": total(after, accepted_name) - total(before, accepted_name),
                         "refused": total(after, refused_name) - total(before, refused_name),
                         "wall": wall, "cpu": cpu, "elapsed": elapsed, "rss": peak_rss_mib(pid)})
    finally:
        collector.stop()
    return rows


def report_rates(title: str, rows: list[dict[str, Any]], seconds: float) -> None:
    print(title)
    for r in rows:
        sustained = r["refused"] == 0 and r["received"] >= r["offered"] > 0
        line = (f"  asked {r['rate']:>7,} spans/s, telemetrygen offered {r['offered'] / seconds:>7,.0f}/s: "
                f"accepted {r['received'] / seconds:>7,.0f}/s "
                f"({r['received']:,.0f} of {r['offered']:,}), refused {r['refused']:,.0f}, "
                f"CPU {r['cpu'] / max(r['received'], 1) * 1e6:.1f} us/span "
                f"({r['cpu'] / r['elapsed'] * 100:.0f}% of a core until drained), "
                f"peak RSS {r['rss']:.0f} MiB")
        if "p50" in r:
            line += f", lap delay p50 {r['p50']:.0f} ms p99 {r['p99']:.0f} ms, laps {r['laps']:,.0f}"
        print(line + ("" if sustained else "  <- not sustained"))
    best = max((r["received"] / seconds for r in rows
                if r["refused"] == 0 and r["received"] >= r["offered"] > 0), default=0.0)
    print(f"  => sustained on one core without refusals: {best:,.0f} spans/s")


# -- (c) in the application ---------------------------------------------------------------------


def app_costs(gateway_endpoint: str, reps: int, traces: int) -> None:
    import threading
    from concurrent import futures

    import grpc
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace import SpanKind

    import otel_chronograph as chrono

    class Null(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
        def Export(self, request: Any, context: Any) -> Any:
            return trace_service_pb2.ExportTraceServiceResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Null(), server)
    null_port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    def run(endpoint: str, with_processor: bool) -> float:
        provider = TracerProvider(shutdown_on_exit=False)
        # A queue that holds the whole run: no span dropped, every one exported and paid for.
        bsp = BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint, insecure=True),
                                 max_queue_size=traces * SPANS_PER_TRACE + 1)
        if with_processor:
            provider.add_span_processor(chrono.ChronographProcessor(
                chrono.load_config({"recorder": {"enabled": False}}), [bsp],
                meter_provider=MeterProvider(shutdown_on_exit=False)))
        else:
            provider.add_span_processor(bsp)
        tracer = provider.get_tracer("app")
        t0 = time.process_time()
        for _ in range(traces):
            with tracer.start_as_current_span("GET /r", kind=SpanKind.SERVER):
                for i in range(SPANS_PER_TRACE - 1):
                    with tracer.start_as_current_span(f"step {i}"):
                        pass
        provider.shutdown()  # flushes the export: its CPU counts
        return time.process_time() - t0

    setups: dict[str, Callable[[], float]] = {
        "SDK + BSP -> no-op OTLP receiver (baseline)": lambda: run(f"127.0.0.1:{null_port}", False),
        "SDK + BSP -> chronograph gateway": lambda: run(gateway_endpoint, False),
        "SDK + chronograph processor + BSP -> no-op receiver": lambda: run(f"127.0.0.1:{null_port}", True),
    }
    for f in setups.values():
        f()  # warm-up
    results: dict[str, list[float]] = {name: [] for name in setups}
    for _ in range(reps):
        for name, f in setups.items():
            results[name].append(f())
    base = statistics.median(results[next(iter(setups))])
    spans = traces * SPANS_PER_TRACE
    print(f"(c) in the application, process CPU until shutdown flushed ({reps} alternating reps x "
          f"{traces} traces x {SPANS_PER_TRACE} spans, medians):")
    for name, values in results.items():
        m = statistics.median(values)
        print(f"  {name}: {m / spans * 1e6:.2f} us/span, x{m / base:.2f}")
    server.stop(0)
    del threading


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short runs (smoke)")
    args = ap.parse_args(argv)
    rates = [5_000, 20_000] if args.quick else [10_000, 20_000, 30_000, 40_000, 50_000, 60_000]
    seconds = 5.0 if args.quick else 20.0
    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        work = Path(tmp)
        report_rates(f"(a) telemetrygen -> chronograph gateway (nop exporter, decision_wait {DECISION_WAIT}, "
                     f"{SPANS_PER_TRACE} spans/trace, {seconds:.0f} s per rate, on core {GATEWAY_CORE}):",
                     run_gateway_rates(work / "gateway", rates, seconds), seconds)
        report_rates(f"(b) the same load -> Collector groupbytrace (wait_duration {DECISION_WAIT}, nop "
                     "exporter), the anchor:",
                     run_collector_rates(work / "collector", rates, seconds), seconds)
        gw = peers.start_gateway(work / "app", gateway_config(work))
        try:
            app_costs(gw.otlp_grpc_endpoint, 3 if args.quick else 7, 500 if args.quick else 3000)
        finally:
            gw.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
