"""Start and stop the real peers of the end-to-end tests as subprocesses on free 127.0.0.1 ports.

The binaries come from ``scripts/build-peers.sh``:

* ``.peers/bin/otelcol-chronograph`` — OpenTelemetry Collector built with ocb from
  ``peers/otelcol-builder.yaml``;
* ``.peers/bin/jaeger`` — Jaeger v2;
* ``.peers/bin/stripe-mock``;
* ``prometheus`` — Debian's package, on ``PATH``.

Every ``start_*`` helper writes its configuration into a given directory, starts the process
with its output in a log file there, and polls a health endpoint until it answers or a
deadline passes (``time.sleep`` is only the poll interval inside those loops). ``Peer.stop()``
terminates the process (SIGTERM, then SIGKILL after a grace period).

Usage::

    with PeerStack(tmp_path) as stack:      # Jaeger + Collector(gateway.yaml) + Prometheus
        stack.collector.otlp_grpc_endpoint  # "127.0.0.1:PORT"
        stack.jaeger.query_url              # "http://127.0.0.1:PORT"
        stack.prometheus.url
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
PEERS_BIN = REPO_ROOT / ".peers" / "bin"
COLLECTOR_CONFIG_DIR = REPO_ROOT / "collector-config"
BUILD_HINT = "run `bash scripts/build-peers.sh` from the repository root to build the real peers"

DEFAULT_START_TIMEOUT = 60.0
POLL_INTERVAL = 0.1


class PeerError(RuntimeError):
    """A peer is missing, did not become ready, or exited early."""


# --------------------------------------------------------------------------------------------
# binaries


def collector_binary() -> Path:
    return _require_binary(PEERS_BIN / "otelcol-chronograph")


def jaeger_binary() -> Path:
    return _require_binary(PEERS_BIN / "jaeger")


def stripe_mock_binary() -> Path:
    return _require_binary(PEERS_BIN / "stripe-mock")


def prometheus_binary() -> Path:
    found = os.environ.get("PROMETHEUS_BIN") or shutil.which("prometheus")
    if not found:
        # Debian installs it in /usr/bin, but be explicit in case PATH is minimal.
        candidate = Path("/usr/bin/prometheus")
        if candidate.exists():
            return candidate
        raise PeerError(f"`prometheus` is not on PATH (Debian package `prometheus`); {BUILD_HINT}")
    return Path(found)


def _require_binary(path: Path) -> Path:
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise PeerError(f"missing peer binary {path}; {BUILD_HINT}")
    return path


# --------------------------------------------------------------------------------------------
# ports and polling


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (the sockets are held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def http_get(url: str, timeout: float = 5.0, headers: Mapping[str, str] | None = None) -> tuple[int, bytes]:
    """GET ``url``; returns (status, body). HTTP errors are returned, not raised."""
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_get_json(url: str, timeout: float = 5.0) -> tuple[int, Any]:
    status, body = http_get(url, timeout=timeout)
    try:
        return status, json.loads(body.decode() or "null")
    except ValueError:
        return status, body.decode(errors="replace")


def wait_until(
    predicate: Callable[[], Any],
    timeout: float,
    what: str,
    interval: float = POLL_INTERVAL,
    on_poll: Callable[[], None] | None = None,
) -> Any:
    """Poll ``predicate`` until it returns something truthy; raise ``TimeoutError`` at the deadline.

    Exceptions from the predicate count as "not yet" (the last one is reported).
    ``on_poll`` runs before every attempt (e.g. to check that a process is still alive).
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    last_value: Any = None
    while True:
        if on_poll is not None:
            on_poll()
        try:
            last_value = predicate()
            if last_value:
                return last_value
        except (OSError, ValueError, KeyError, urllib.error.URLError) as e:  # not ready yet
            last_exc = e
        if time.monotonic() >= deadline:
            detail = f"; last error: {last_exc!r}" if last_exc else f"; last value: {last_value!r}"
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}{detail}")
        time.sleep(interval)


# --------------------------------------------------------------------------------------------
# process wrapper


@dataclass
class Peer:
    name: str
    argv: list[str]
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.workdir / f"{self.name}.log"

    def start(self) -> Peer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **self.env}
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=self.workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stop() never hits the test runner
            )
        return self

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def check_alive(self) -> None:
        if self.proc is None:
            raise PeerError(f"{self.name} was not started")
        code = self.proc.poll()
        if code is not None:
            raise PeerError(
                f"{self.name} exited with status {code}; argv={self.argv}\n--- {self.log_path} ---\n"
                f"{self.log_tail()}"
            )

    def wait_http_ok(
        self, url: str, timeout: float = DEFAULT_START_TIMEOUT, ok: Callable[[int], bool] | None = None
    ) -> None:
        accept = ok or (lambda status: 200 <= status < 300)

        def ready() -> bool:
            status, _ = http_get(url, timeout=2.0)
            return accept(status)

        try:
            wait_until(ready, timeout, f"{self.name} at {url}", on_poll=self.check_alive)
        except TimeoutError as e:
            raise PeerError(f"{e}\n--- {self.log_path} ---\n{self.log_tail()}") from None

    def stop(self, grace: float = 10.0) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=grace)
        return self.proc.returncode

    def __enter__(self) -> Peer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------------------------
# Jaeger v2


@dataclass
class Jaeger(Peer):
    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['otlp_grpc']}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['otlp_http']}"

    @property
    def query_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['query_http']}"

    def services(self) -> list[str]:
        status, body = http_get_json(f"{self.query_url}/api/v3/services")
        if status != 200:
            return []
        return list(body.get("services") or [])

    def find_traces(
        self,
        service: str,
        start_min: float | None = None,
        start_max: float | None = None,
        operation: str | None = None,
        num_traces: int = 100,
        raw: bool = False,
    ) -> list[dict[str, Any]]:
        """Spans of the traces of ``service`` (``/api/v3/traces``), flattened.

        Each returned span dict is the OTLP/JSON span with two extra keys: ``_resource``
        (resource attributes as a plain dict) and ``_attributes`` (span attributes as a plain dict).
        Times are seconds since the epoch; defaults are the last hour.
        """
        now = time.time()
        params = {
            "query.service_name": service,
            "query.start_time_min": _rfc3339(start_min if start_min is not None else now - 3600),
            "query.start_time_max": _rfc3339(start_max if start_max is not None else now + 60),
            "query.num_traces": str(num_traces),
        }
        if operation:
            params["query.operation_name"] = operation
        if raw:
            params["query.raw_traces"] = "true"
        status, body = http_get_json(f"{self.query_url}/api/v3/traces?{urllib.parse.urlencode(params)}")
        if status == 404:  # "No traces found"
            return []
        if status != 200:
            raise PeerError(f"jaeger /api/v3/traces returned {status}: {body!r}")
        return flatten_otlp_spans(body.get("result") or {})

    def get_trace(self, trace_id_hex: str, raw: bool = False) -> list[dict[str, Any]]:
        """The trace's spans; ``raw`` asks for them as stored (``raw_traces=true``: no adjusters, so a
        span exported twice shows twice instead of being deduplicated)."""
        query = "?raw_traces=true" if raw else ""
        status, body = http_get_json(f"{self.query_url}/api/v3/traces/{trace_id_hex}{query}")
        if status == 404:
            return []
        if status != 200:
            raise PeerError(f"jaeger /api/v3/traces/{trace_id_hex} returned {status}: {body!r}")
        return flatten_otlp_spans(body.get("result") or {})


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int((ts % 1) * 1e9):09d}Z"


def otlp_value(value: Mapping[str, Any]) -> Any:
    """Python value of an OTLP/JSON AnyValue."""
    if "stringValue" in value:
        return value["stringValue"]
    if "boolValue" in value:
        return value["boolValue"]
    if "intValue" in value:
        return int(value["intValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])
    if "arrayValue" in value:
        return [otlp_value(v) for v in value["arrayValue"].get("values", [])]
    if "kvlistValue" in value:
        return otlp_attributes(value["kvlistValue"].get("values", []))
    if "bytesValue" in value:
        return value["bytesValue"]
    return None


def otlp_attributes(attrs: list[Mapping[str, Any]] | None) -> dict[str, Any]:
    return {a["key"]: otlp_value(a.get("value") or {}) for a in attrs or []}


def flatten_otlp_spans(traces_data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """OTLP/JSON TracesData (``{"resourceSpans": [...]}``) -> list of spans with parsed attributes."""
    spans: list[dict[str, Any]] = []
    for rs in traces_data.get("resourceSpans") or []:
        resource = otlp_attributes((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or []:
            for span in ss.get("spans") or []:
                spans.append(
                    {**span, "_resource": resource, "_attributes": otlp_attributes(span.get("attributes"))}
                )
    return spans


def write_jaeger_config(path: Path, ports: Mapping[str, int]) -> Path:
    """Jaeger v2 config: in-memory storage, OTLP receiver, query API/UI, health check."""
    config = f"""\
# Written by tests/e2e/peers.py: Jaeger v2 with in-memory storage on 127.0.0.1 ports.
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: info

extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:{ports["health"]}
  jaeger_query:
    storage:
      traces: memstore
    http:
      endpoint: 127.0.0.1:{ports["query_http"]}
    grpc:
      endpoint: 127.0.0.1:{ports["query_grpc"]}
  jaeger_storage:
    backends:
      memstore:
        memory:
          max_traces: 100000

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:{ports["otlp_grpc"]}
      http:
        endpoint: 127.0.0.1:{ports["otlp_http"]}

processors:
  batch:
    timeout: 200ms

exporters:
  jaeger_storage_exporter:
    trace_storage: memstore
"""
    path.write_text(config)
    return path


def start_jaeger(workdir: Path, timeout: float = DEFAULT_START_TIMEOUT) -> Jaeger:
    workdir.mkdir(parents=True, exist_ok=True)
    names = ["otlp_grpc", "otlp_http", "query_http", "query_grpc", "health", "unused"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    config = write_jaeger_config(workdir / "jaeger.yaml", ports)
    peer = Jaeger(
        name="jaeger",
        argv=[str(jaeger_binary()), "--config", str(config)],
        workdir=workdir,
        # Jaeger's internal tracer otherwise dials the OTel SDK default localhost:4317, which may be
        # another Collector on this machine: point it at a port where nothing listens.
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{ports['unused']}",
            "OTEL_TRACES_EXPORTER": "none",
        },
        ports=ports,
    )
    peer.start()
    try:
        peer.wait_http_ok(f"http://127.0.0.1:{ports['health']}/status", timeout)
        peer.wait_http_ok(f"{peer.query_url}/api/v3/services", timeout)
    except BaseException:
        peer.stop()
        raise
    return peer


# --------------------------------------------------------------------------------------------
# OpenTelemetry Collector


@dataclass
class OTLPPeer(Peer):
    """A peer receiving OTLP on gRPC and HTTP and serving Prometheus text on ``/metrics``."""

    metrics_port = "metrics"  # the key of ``ports`` serving /metrics

    @property
    def otlp_grpc_endpoint(self) -> str:
        return f"127.0.0.1:{self.ports['otlp_grpc']}"

    @property
    def otlp_http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.ports['otlp_http']}"

    def scrape(self) -> str:
        status, body = http_get(f"http://127.0.0.1:{self.ports[self.metrics_port]}/metrics")
        if status != 200:
            raise PeerError(f"{self.name}: /metrics returned {status}")
        return body.decode()


@dataclass
class Collector(OTLPPeer):
    metrics_port = "prometheus"

    @property
    def prometheus_endpoint(self) -> str:
        """host:port of the prometheus exporter (scrape target)."""
        return f"127.0.0.1:{self.ports['prometheus']}"

    def self_metric(self, name: str) -> float:
        """Sum of every series of the Collector's own metric ``name`` (its telemetry endpoint; in
        v0.161 counters have no ``_total``: ``otelcol_receiver_refused_spans``); 0.0 when absent."""
        status, body = http_get(f"http://127.0.0.1:{self.ports['telemetry']}/metrics")
        if status != 200:
            raise PeerError(f"collector telemetry endpoint returned {status}")
        total = 0.0
        for line in body.decode().splitlines():
            series, _, value = line.rpartition(" ")
            if series.split("{", 1)[0] == name:
                total += float(value)
        return total


def collector_env(
    ports: Mapping[str, int], jaeger_otlp_grpc: str | None, export_dir: Path | None
) -> dict[str, str]:
    """Environment variables understood by the configs in collector-config/."""
    env = {
        "OTELCOL_OTLP_GRPC_ENDPOINT": f"127.0.0.1:{ports['otlp_grpc']}",
        "OTELCOL_OTLP_HTTP_ENDPOINT": f"127.0.0.1:{ports['otlp_http']}",
        "OTELCOL_HEALTH_ENDPOINT": f"127.0.0.1:{ports['health']}",
        "OTELCOL_PROMETHEUS_ENDPOINT": f"127.0.0.1:{ports['prometheus']}",
        "OTELCOL_TELEMETRY_HOST": "127.0.0.1",
        "OTELCOL_TELEMETRY_PORT": str(ports["telemetry"]),
        "OTELCOL_BATCH_TIMEOUT": "200ms",
        "OTELCOL_SPANMETRICS_FLUSH_INTERVAL": "1s",
        # Nothing should listen here: a missing Jaeger shows up as export errors, not silence.
        "JAEGER_OTLP_GRPC_ENDPOINT": jaeger_otlp_grpc or f"127.0.0.1:{ports['unused']}",
    }
    if export_dir is not None:
        env["OTELCOL_EXPORT_DIR"] = str(export_dir)
    return env


def collector_ports() -> dict[str, int]:
    names = ["otlp_grpc", "otlp_http", "health", "prometheus", "telemetry", "unused"]
    return dict(zip(names, free_ports(len(names)), strict=True))


def start_collector(
    workdir: Path,
    config: Path | str = "gateway.yaml",
    jaeger_otlp_grpc: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_START_TIMEOUT,
) -> Collector:
    """Start the built Collector with a file from collector-config/ (name or path)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config_path = Path(config)
    if not config_path.is_absolute() and not config_path.exists():
        config_path = COLLECTOR_CONFIG_DIR / config_path
    ports = collector_ports()
    export_dir = workdir / "otel-export"
    export_dir.mkdir(exist_ok=True)
    env = collector_env(ports, jaeger_otlp_grpc, export_dir)
    env.update(extra_env or {})
    peer = Collector(
        name="otelcol",
        argv=[str(collector_binary()), "--config", str(config_path)],
        workdir=workdir,
        env=env,
        ports=ports,
    )
    peer.start()
    try:
        peer.wait_http_ok(f"http://127.0.0.1:{ports['health']}/", timeout)
    except BaseException:
        peer.stop()
        raise
    return peer


def validate_collector_config(config: Path, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``otelcol-chronograph validate --config <file>`` with the default (unset) environment."""
    return subprocess.run(
        [str(collector_binary()), "validate", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=REPO_ROOT,
    )


# --------------------------------------------------------------------------------------------
# Prometheus


@dataclass
class Prometheus(Peer):
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"

    def query(self, expr: str, at: float | None = None) -> dict[str, Any]:
        """Instant query; returns the ``data`` object (``resultType``, ``result``). Raises on API errors."""
        params = {"query": expr}
        if at is not None:
            params["time"] = f"{at:.3f}"
        status, body = http_get_json(f"{self.url}/api/v1/query?{urllib.parse.urlencode(params)}")
        if status != 200 or not isinstance(body, dict) or body.get("status") != "success":
            raise PeerError(f"prometheus query {expr!r} failed ({status}): {body!r}")
        return dict(body["data"])

    def query_vector(self, expr: str) -> list[dict[str, Any]]:
        data = self.query(expr)
        result = data.get("result")
        if data.get("resultType") == "scalar":
            return [{"metric": {}, "value": result}]
        return list(result or [])

    def label_values(self, label: str) -> list[str]:
        status, body = http_get_json(f"{self.url}/api/v1/label/{urllib.parse.quote(label)}/values")
        if status != 200:
            raise PeerError(f"prometheus label values {label} failed ({status}): {body!r}")
        return list(body.get("data") or [])

    def targets_up(self) -> bool:
        status, body = http_get_json(f"{self.url}/api/v1/targets")
        if status != 200:
            return False
        active = body.get("data", {}).get("activeTargets", [])
        return bool(active) and all(t.get("health") == "up" for t in active)


def write_prometheus_config(path: Path, scrape_targets: list[str], interval: str = "1s") -> Path:
    targets = ", ".join(f'"{t}"' for t in scrape_targets)
    path.write_text(
        f"""\
# Written by tests/e2e/peers.py: scrape the Collector's prometheus exporter every {interval}.
global:
  scrape_interval: {interval}
  evaluation_interval: {interval}
scrape_configs:
  - job_name: otel-collector
    scrape_interval: {interval}
    scrape_timeout: {interval}
    # Keep the job/instance labels that the exporter derives from service.name /
    # service.instance.id (as deploy/prometheus/prometheus.yml does).
    honor_labels: true
    static_configs:
      - targets: [{targets}]
"""
    )
    return path


def start_prometheus(
    workdir: Path,
    scrape_targets: list[str],
    interval: str = "1s",
    timeout: float = DEFAULT_START_TIMEOUT,
) -> Prometheus:
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = write_prometheus_config(workdir / "prometheus.yml", scrape_targets, interval)
    data = workdir / "prometheus-data"
    data.mkdir(exist_ok=True)
    peer = Prometheus(
        name="prometheus",
        argv=[
            str(prometheus_binary()),
            f"--config.file={config}",
            f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
            "--log.level=info",
        ],
        workdir=workdir,
        ports={"http": port},
    )
    peer.start()
    try:
        peer.wait_http_ok(f"{peer.url}/-/ready", timeout)
    except BaseException:
        peer.stop()
        raise
    return peer


# --------------------------------------------------------------------------------------------
# stripe-mock


@dataclass
class StripeMock(Peer):
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports['http']}"


def start_stripe_mock(workdir: Path, timeout: float = DEFAULT_START_TIMEOUT) -> StripeMock:
    workdir.mkdir(parents=True, exist_ok=True)
    http_port, https_port = free_ports(2)
    peer = StripeMock(
        name="stripe-mock",
        argv=[
            str(stripe_mock_binary()),
            "-http-addr",
            f"127.0.0.1:{http_port}",
            "-https-addr",
            f"127.0.0.1:{https_port}",
        ],
        workdir=workdir,
        ports={"http": http_port, "https": https_port},
    )
    peer.start()

    def ready() -> bool:
        status, _ = http_get(f"{peer.url}/v1/customers", headers={"Authorization": "Bearer sk_test_123"})
        return status == 200

    try:
        wait_until(ready, timeout, "stripe-mock", on_poll=peer.check_alive)
    except TimeoutError as e:
        peer.stop()
        raise PeerError(f"{e}\n{peer.log_tail()}") from None
    return peer


# --------------------------------------------------------------------------------------------
# chronograph gateway (this project's own OTLP gateway, run as `chronograph gateway`)


CHRONOGRAPH_BIN = Path(os.environ.get("CHRONOGRAPH_BIN") or Path(sys.executable).with_name("chronograph"))


@dataclass
class ChronographGateway(OTLPPeer):
    """``chronograph gateway --config FILE`` with its receivers and metrics on the given ports."""

    @property
    def metrics_endpoint(self) -> str:
        """host:port of the Prometheus text endpoint (``/metrics``; also the readiness probe)."""
        return f"127.0.0.1:{self.ports['metrics']}"

    def restart(self, timeout: float = DEFAULT_START_TIMEOUT) -> ChronographGateway:
        """Start again on the same ports (after a stop or a kill)."""
        self.start()
        self.wait_http_ok(f"http://{self.metrics_endpoint}/metrics", timeout)
        return self

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)


def gateway_ports() -> dict[str, int]:
    return dict(zip(["otlp_grpc", "otlp_http", "metrics"], free_ports(3), strict=True))


def start_gateway(
    workdir: Path,
    config: Path,
    ports: Mapping[str, int] | None = None,
    name: str = "gateway",
    extra_env: Mapping[str, str] | None = None,
    timeout: float = DEFAULT_START_TIMEOUT,
    prefix: list[str] | None = None,
) -> ChronographGateway:
    """Start ``chronograph gateway --config config``. The config reads its endpoints from
    ``CHRONOGRAPH_GATEWAY_{GRPC,HTTP,METRICS}_ENDPOINT`` (as collector-config/chronograph-gateway.yaml
    does); they are set to ``ports`` (free ports by default). ``prefix`` goes before the command
    (``taskset -c 0`` in the benchmark)."""
    workdir.mkdir(parents=True, exist_ok=True)
    ports = dict(ports or gateway_ports())
    env = {
        "CHRONOGRAPH_GATEWAY_GRPC_ENDPOINT": f"127.0.0.1:{ports['otlp_grpc']}",
        "CHRONOGRAPH_GATEWAY_HTTP_ENDPOINT": f"127.0.0.1:{ports['otlp_http']}",
        "CHRONOGRAPH_GATEWAY_TELEMETRY_ENDPOINT": f"127.0.0.1:{ports['metrics']}",
        **(extra_env or {}),
    }
    argv = [*(prefix or ()), str(CHRONOGRAPH_BIN), "gateway", "--config", str(config)]
    peer = ChronographGateway(name=name, argv=argv,
                              workdir=workdir, env=env, ports=ports)
    peer.start()
    try:
        peer.wait_http_ok(f"http://{peer.metrics_endpoint}/metrics", timeout)
    except BaseException:
        peer.stop()
        raise
    return peer


# --------------------------------------------------------------------------------------------
# the whole stack


class PeerStack:
    """Jaeger + Collector (a collector-config/ file, default gateway.yaml) + Prometheus scraping it."""

    def __init__(
        self, workdir: Path, collector_config: str | Path = "gateway.yaml", scrape_interval: str = "1s"
    ):
        self.workdir = Path(workdir)
        self.collector_config = collector_config
        self.scrape_interval = scrape_interval
        self.jaeger: Jaeger | None = None
        self.collector: Collector | None = None
        self.prometheus: Prometheus | None = None

    def start(self) -> PeerStack:
        try:
            self.jaeger = start_jaeger(self.workdir / "jaeger")
            self.collector = start_collector(
                self.workdir / "otelcol",
                self.collector_config,
                jaeger_otlp_grpc=self.jaeger.otlp_grpc_endpoint,
            )
            self.prometheus = start_prometheus(
                self.workdir / "prometheus", [self.collector.prometheus_endpoint], self.scrape_interval
            )
            wait_until(
                self.prometheus.targets_up,
                DEFAULT_START_TIMEOUT,
                "prometheus scrape target up",
                on_poll=self.prometheus.check_alive,
            )
        except BaseException:
            self.stop()
            raise
        return self

    def otel_env(
        self, service_name: str = "chronograph-demo", metric_export_ms: int = 1000
    ) -> dict[str, str]:
        """Environment for an instrumented app exporting OTLP/gRPC to the Collector."""
        assert self.collector is not None
        return {
            "OTEL_SERVICE_NAME": service_name,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{self.collector.otlp_grpc_endpoint}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_INSECURE": "true",
            "OTEL_TRACES_EXPORTER": "otlp",
            "OTEL_METRICS_EXPORTER": "otlp",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_METRIC_EXPORT_INTERVAL": str(metric_export_ms),
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }

    def stop(self) -> None:
        # Reverse order: nothing scrapes or exports into a peer that is already gone.
        for peer in (self.prometheus, self.collector, self.jaeger):
            if peer is not None:
                peer.stop()

    def logs(self) -> str:
        parts = []
        for peer in (self.jaeger, self.collector, self.prometheus):
            if peer is not None:
                parts.append(f"--- {peer.name} ({peer.log_path}) ---\n{peer.log_tail(60)}")
        return "\n".join(parts)

    def __enter__(self) -> PeerStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def peer_stack(workdir: Path, collector_config: str | Path = "gateway.yaml") -> Iterator[PeerStack]:
    stack = PeerStack(workdir, collector_config)
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def assert_dashboards_have_data(prom: Prometheus, service: str, rate_interval: str, deadline: float,
                                keep_alive: Callable[[], None] | None = None) -> None:
    """Every PromQL expression of the shipped dashboards, and every template variable query, returns
    data for ``service`` within ``deadline`` seconds (AssertionError naming the ones that don't).

    ``rate()`` panels show data only while their series increase inside the rate window, as on a real
    dashboard: ``keep_alive`` (called at most once a second while waiting) keeps the traffic flowing, so
    a slow machine that reaches this check after the window has passed still sees live data."""
    import promql

    subs = promql.Substitutions(service=[service], rate_interval=rate_interval, range="5m")
    queries = promql.dashboard_queries(substitutions=subs)
    assert len(queries) >= 10, queries
    pending = {q.expr: q for q in queries}

    last_push = [time.monotonic()]

    def push() -> None:
        if keep_alive is not None and time.monotonic() - last_push[0] >= 1.0:
            last_push[0] = time.monotonic()
            keep_alive()

    def all_have_data() -> bool:
        push()
        for expr in list(pending):
            if promql.has_data(prom.query(expr)):
                del pending[expr]
        return not pending

    try:
        wait_until(all_have_data, deadline, "data for every dashboard expression")
    except TimeoutError:
        raise AssertionError("dashboard expressions without data:\n"
                             + "\n".join(str(q) for q in pending.values())) from None
    for selector in promql.variable_queries(substitutions=subs):
        assert prom.query_vector(selector), f"template variable query has no data: {selector}"
