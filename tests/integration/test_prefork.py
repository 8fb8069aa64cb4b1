"""Fork safety with a real prefork server: gunicorn --preload, several workers, chronograph installed
(and a first lap run) in the master before fork. Every request's lap must reach the metrics exporter
and the flight recorder of its worker without anybody calling force_flush()."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.otlp_receiver import OTLPReceiver

from .test_autoinstrument import _free_port, _wait_http

HERE = Path(__file__).parent
REQUESTS = 40


def _lap_points(receiver: OTLPReceiver, command: str) -> int:
    total = 0
    for metric in receiver.metric("chronograph.lap.duration"):
        for point in metric.get("histogram", {}).get("dataPoints", []):
            attrs = {a["key"]: a["value"].get("stringValue") for a in point.get("attributes", [])}
            if attrs.get("chronograph.command") == command:
                total += int(point.get("count", 0))
    return total


def _records(db: Path, command: str) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            sql = "SELECT count(*) FROM flight_records WHERE command = ?"
            return int(conn.execute(sql, (command,)).fetchone()[0])
    except sqlite3.OperationalError as exc:  # not created yet, or busy: poll again
        if "no such table" not in str(exc) and "locked" not in str(exc) and "busy" not in str(exc):
            raise
        return 0


def test_gunicorn_preload_workers_record_every_lap_without_a_flush(tmp_path: Path) -> None:
    port = _free_port()
    db = tmp_path / "flight.db"
    with OTLPReceiver() as receiver:
        env = {**os.environ, "TEST_OTLP": receiver.endpoint, "TEST_DB": str(db),
               "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "--preload", "-w", "3", "--threads", "2",
             "-b", f"127.0.0.1:{port}", "prefork_app:app"],
            cwd=HERE, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            _wait_http(f"http://127.0.0.1:{port}/work", server)
            pids = set()
            with requests.Session() as http:
                for _ in range(REQUESTS - 1):
                    reply = http.get(f"http://127.0.0.1:{port}/work", timeout=10)
                    assert reply.status_code == 200
                    pids.add(reply.text.split()[1])
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if (_lap_points(receiver, "GET /work") >= REQUESTS
                        and _records(db, "GET /work") >= REQUESTS):
                    break
                time.sleep(0.1)
            diagnosis = f"workers {sorted(pids)}"
            assert _lap_points(receiver, "GET /work") == REQUESTS, diagnosis
            assert _records(db, "GET /work") == REQUESTS, diagnosis
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(60)
            except subprocess.TimeoutExpired:
                server.kill()
                raise
