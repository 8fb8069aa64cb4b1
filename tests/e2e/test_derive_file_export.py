"""`chronograph derive` on what the real Collector's file exporter wrote: a real Flask app under
`opentelemetry-instrument` with the chronograph configurator exports to the built Collector
(collector-config/file-export.yaml); deriving traces.jsonl again offline gives the laps the in-process
processor derived (compared with the chronograph.* attributes of the annotated roots in the file)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import peers
import pytest
import requests
from tests.integration.test_autoinstrument import CONFIG  # the same Flask app, the same rules

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def annotated_roots(path: Path) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for line in path.read_text().splitlines():
        for span in peers.flatten_otlp_spans(json.loads(line)):
            attrs = span["_attributes"]
            if "chronograph.request_id" in attrs:
                out[attrs["chronograph.request_id"]] = attrs
    return out


@pytest.mark.e2e
def test_derive_on_the_collector_file_export_equals_the_in_process_laps(tmp_path: Path,
                                                                        collector_bin: Path) -> None:
    cfg = tmp_path / "chronograph.yaml"
    cfg.write_text(CONFIG)
    collector = peers.start_collector(tmp_path, "file-export.yaml")
    traces = tmp_path / "otel-export" / "traces.jsonl"
    try:
        port = peers.free_port()
        env = {**os.environ, "OTEL_PYTHON_DISTRO": "chronograph", "OTEL_PYTHON_CONFIGURATOR": "chronograph",
               "CHRONOGRAPH_CONFIG": str(cfg), "OTEL_SERVICE_NAME": "flask-file-export",
               "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{collector.otlp_grpc_endpoint}",
               "OTEL_EXPORTER_OTLP_INSECURE": "true", "OTEL_BSP_SCHEDULE_DELAY": "200",
               "OTEL_LOGS_EXPORTER": "none"}
        app = subprocess.Popen(
            [str(BIN / "opentelemetry-instrument"), "--traces_exporter", "otlp", "--metrics_exporter", "none",
             sys.executable, str(ROOT / "tests" / "integration" / "flask_app.py"), str(port)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            peers.wait_until(lambda: peers.http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200, 60,
                             "the app", on_poll=lambda: None if app.poll() is None else pytest.fail(
                                 app.stderr.read().decode() if app.stderr else "app exited"))
            for name in ("alpha", "beta", "gamma", "delta"):
                assert requests.get(f"http://127.0.0.1:{port}/score/{name}", timeout=10).status_code == 200
            assert requests.get(f"http://127.0.0.1:{port}/boom", timeout=10).status_code == 500
        finally:
            app.send_signal(signal.SIGTERM)
            app.wait(30)
        peers.wait_until(lambda: traces.exists() and len(annotated_roots(traces)) >= 6, 30,
                         "annotated laps in traces.jsonl", on_poll=collector.check_alive)
    finally:
        collector.stop()
    in_process = annotated_roots(traces)
    out = subprocess.run([str(BIN / "chronograph"), "derive", "--config", str(cfg), "--format", "json",
                          str(traces)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    derived = {d["requestId"]: d for d in map(json.loads, out.stdout.splitlines())}
    assert set(derived) == set(in_process)
    for rid, attrs in in_process.items():
        lap = derived[rid]
        assert lap["lapTime"] == attrs["chronograph.lap_ms"]
        assert lap["otherMs"] == attrs["chronograph.other_ms"]
        assert lap["status"] == attrs["chronograph.status"]
        assert lap["command"] == attrs["chronograph.command"]
        assert lap["billing"]["cost"] == attrs["chronograph.cost"]
        assert lap["billing"]["tier"] == attrs["chronograph.tier"]
        sectors = {k.split("_", 1)[1]: v for k, v in lap["sectors"].items()}
        assert sectors == {k[len("chronograph.sector."):-len(".ms")]: v for k, v in attrs.items()
                           if k.startswith("chronograph.sector.") and k.endswith(".ms")}
        assert lap["service"] == "flask-file-export"
    assert any(lap["status"] == "RED" for lap in derived.values())  # /boom
