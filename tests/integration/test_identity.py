"""Identity rules on a real app that never imports the package: under `opentelemetry-instrument`, the
client's W3C `baggage` header names the customer and tier; laps and billing rows carry them."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import requests

from tests.otlp_receiver import OTLPReceiver

from .test_autoinstrument import BIN, HERE, _free_port, _wait_http

CONFIG = """
chronograph:
  laps:
    identity:
      customer: [{baggage: customer.id}, {attribute: enduser.id}]
      tier: [{baggage: tier}]
  status: {green_ms: 5000, yellow_ms: 10000}
  billing:
    enabled: true
    rates: {"GET /score/<name>": "0.002"}
    meter: {value: requests, delivery: external, outbox: OUTBOX}
"""


def test_baggage_header_sets_customer_and_tier_of_laps_and_usage(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.db"
    cfg = tmp_path / "chronograph.yaml"
    cfg.write_text(CONFIG.replace("OUTBOX", str(outbox)))
    with OTLPReceiver() as rx:
        port = _free_port()
        env = {**os.environ, "OTEL_PYTHON_DISTRO": "chronograph", "OTEL_PYTHON_CONFIGURATOR": "chronograph",
               "CHRONOGRAPH_CONFIG": str(cfg), "OTEL_SERVICE_NAME": "identity-app",
               "OTEL_EXPORTER_OTLP_ENDPOINT": rx.endpoint, "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
               "OTEL_BSP_SCHEDULE_DELAY": "200", "OTEL_LOGS_EXPORTER": "none"}
        env.pop("STRIPE_API_KEY", None)
        proc = subprocess.Popen(
            [str(BIN / "opentelemetry-instrument"), "--traces_exporter", "otlp", "--metrics_exporter", "none",
             sys.executable, str(HERE / "flask_app.py"), str(port)],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _wait_http(f"http://127.0.0.1:{port}/healthz", proc)
            for customer, tier in (("cus_42", "pro"), ("cus_7", "enterprise"), ("cus_42", "pro")):
                reply = requests.get(f"http://127.0.0.1:{port}/score/x", timeout=10,
                                     headers={"baggage": f"customer.id={customer},tier={tier}"})
                assert reply.status_code == 200
            assert requests.get(f"http://127.0.0.1:{port}/score/anon", timeout=10).status_code == 200
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, proc.stderr.read().decode() if proc.stderr else ""
        roots = [s["attributes"] for s in rx.spans if "chronograph.request_id" in s["attributes"]
                 and s["attributes"].get("chronograph.command") == "GET /score/<name>"]
    assert sorted((a.get("chronograph.customer") or "", a["chronograph.tier"]) for a in roots) == [
        ("", "free"), ("cus_42", "pro"), ("cus_42", "pro"), ("cus_7", "enterprise")]
    with sqlite3.connect(outbox) as db:
        rows = db.execute("SELECT customer, tier, cost FROM usage WHERE command = 'GET /score/<name>'"
                          " ORDER BY customer").fetchall()
    billed = sorted((c, t, cost) for c, t, cost in rows if c is not None)
    assert billed == [("cus_42", "pro", "0.002"), ("cus_42", "pro", "0.002"),
                      ("cus_7", "enterprise", "0.004")]
