"""A real Flask app under `opentelemetry-instrument` with the chronograph distro and configurator."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.otlp_receiver import OTLPReceiver

HERE = Path(__file__).parent
BIN = Path(sys.executable).parent

CONFIG = """
chronograph:
  sectors:
    rules:
      - {name: storage, match: {attribute: db.system}}
      - {name: backend, match: {kind: CLIENT}}
  status: {green_ms: 5000, yellow_ms: 10000}
  billing:
    rates: {"GET /score/<name>": "0.002"}
    default_tier: pro
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"app exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if requests.get(url, timeout=1).status_code == 200:
                return
        except requests.ConnectionError:
            time.sleep(0.05)
    raise AssertionError(f"{url} not ready after {timeout}s")


@pytest.fixture(params=["CHRONOGRAPH_CONFIG", "OTEL_CONFIG_FILE"])
def app_run(tmp_path: Path, request: pytest.FixtureRequest):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "chronograph.yaml"
    if request.param == "OTEL_CONFIG_FILE":
        # The same block inside an OpenTelemetry config file, under distribution.chronograph.
        body = "\n".join("    " + line for line in CONFIG.strip().splitlines()[1:])
        cfg.write_text("file_format: '0.4'\ndistribution:\n  chronograph:\n" + body + "\n")
    else:
        cfg.write_text(CONFIG)
    with OTLPReceiver() as rx:
        port = _free_port()
        env = {
            **os.environ,
            "OTEL_PYTHON_DISTRO": "chronograph",
            "OTEL_PYTHON_CONFIGURATOR": "chronograph",
            request.param: str(cfg),
            "OTEL_SERVICE_NAME": "flask-under-test",
            "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_METRIC_EXPORT_INTERVAL": "500",
            "OTEL_BSP_SCHEDULE_DELAY": "200",
            "OTEL_LOGS_EXPORTER": "none",
        }
        proc = subprocess.Popen(
            [str(BIN / "opentelemetry-instrument"), "--traces_exporter", "otlp", "--metrics_exporter", "otlp",
             sys.executable, str(HERE / "flask_app.py"), str(port)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        try:
            _wait_http(f"http://127.0.0.1:{port}/healthz", proc)
            yield rx, port, proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()


def test_server_span_arrives_annotated_with_sectors_and_metrics(app_run) -> None:  # type: ignore[no-untyped-def]
    rx, port, proc = app_run
    for name in ("alpha", "beta", "gamma"):
        assert requests.get(f"http://127.0.0.1:{port}/score/{name}", timeout=10).status_code == 200
    assert requests.get(f"http://127.0.0.1:{port}/boom", timeout=10).status_code == 500

    def laps() -> list[dict]:  # type: ignore[type-arg]
        return [s for s in rx.spans if s.get("kind") == "SPAN_KIND_SERVER"
                and "chronograph.lap_ms" in s["attributes"] and s["name"] != "GET /healthz"]

    rx.wait_for(lambda: len(laps()) >= 4, what="4 annotated SERVER spans")
    rx.wait_for(lambda: bool(rx.metric("chronograph.lap.duration")), what="chronograph.lap.duration")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, proc.stderr.read().decode() if proc.stderr else ""

    score_laps = [s for s in laps() if s["attributes"].get("chronograph.command") == "GET /score/<name>"]
    assert len(score_laps) == 3
    for root in score_laps:
        a = root["attributes"]
        assert a["chronograph.status"] == "GREEN"
        assert a["chronograph.request_id"] == "req_" + bytes.fromhex(
            __import__("base64").b64decode(root["spanId"]).hex()).hex()
        assert a["chronograph.cost"] == "0.002"
        assert a.get("chronograph.sector.storage.ms", 0) > 0, a
        assert a["chronograph.sector.backend.ms"] > 0
        assert a["chronograph.lap_ms"] >= a["chronograph.sector.backend.ms"]
        children = [s for s in rx.spans if s["traceId"] == root["traceId"] and s is not root]
        assert any(c["attributes"].get("db.system") == "sqlite" for c in children)
        assert any((c.get("kind") == "SPAN_KIND_CLIENT" and "http.method" in c["attributes"])
                   or "http.request.method" in c["attributes"] for c in children)
        assert root["resource"]["service.name"] == "flask-under-test"

    boom = [s for s in laps() if s["name"].endswith("/boom")]
    assert boom and boom[0]["attributes"]["chronograph.status"] == "RED"
    assert boom[0]["attributes"]["chronograph.error"] is True

    points = [p for m in rx.metric("chronograph.lap.duration") for p in m["histogram"]["dataPoints"]]
    commands = {a["value"]["stringValue"] for p in points for a in p["attributes"]
                if a["key"] == "chronograph.command"}
    assert "GET /score/<name>" in commands
    assert sum(int(p["count"]) for p in points
               if {"key": "chronograph.command", "value": {"stringValue": "GET /score/<name>"}}
               in p["attributes"]) >= 3
    assert rx.metric("chronograph.sector.duration")


def test_split_times_printed_with_no_trace_exporter(tmp_path: Path) -> None:
    """`--traces_exporter none`: the processor is still installed and the display prints each lap."""
    script = tmp_path / "cli.py"
    script.write_text(
        "import otel_chronograph as chrono\n"
        "with chrono.lap('faf score', tier='pro'):\n"
        "    with chrono.sector('init'):\n"
        "        pass\n"
    )
    env = {**os.environ, "OTEL_PYTHON_DISTRO": "chronograph", "OTEL_PYTHON_CONFIGURATOR": "chronograph",
           "CHRONOGRAPH_SPLIT_TIMES": "true", "NO_COLOR": "1"}
    env.pop("CHRONOGRAPH_CONFIG", None)
    out = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), "--traces_exporter", "none", "--metrics_exporter", "none",
         sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "FAF SCORE - Chronograph" in out.stderr
    assert "Sector 1: init" in out.stderr
    assert "LAP TIME:" in out.stderr and "GREEN" in out.stderr


def test_bad_config_fails_fast_with_key_and_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("chronograph:\n  status: {green_ms: -5}\n")
    env = {**os.environ, "OTEL_PYTHON_DISTRO": "chronograph", "OTEL_PYTHON_CONFIGURATOR": "chronograph",
           "CHRONOGRAPH_CONFIG": str(cfg)}
    out = subprocess.run(
        [str(BIN / "opentelemetry-instrument"), "--traces_exporter", "none", "--metrics_exporter", "none",
         sys.executable, "-c", "print('app ran')"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "app ran" not in out.stdout  # the application does not start without its configured processor
    assert "Traceback" not in out.stderr
    assert "chronograph.status.green_ms" in out.stderr
    assert str(cfg) in out.stderr
