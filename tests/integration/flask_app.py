"""A small real Flask service: a SQLite query and an outgoing HTTP call per request. Never imports
otel_chronograph: laps and sectors come from auto-instrumentation and config rules only."""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import requests
from flask import Flask, jsonify


class _Upstream(BaseHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = json.dumps({"weight": 0.5}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Upstream)
threading.Thread(target=upstream.serve_forever, daemon=True).start()
UPSTREAM = f"http://127.0.0.1:{upstream.server_address[1]}/weight"

app = Flask(__name__)


@app.get("/healthz")
def healthz() -> tuple[str, int]:
    return "ok", 200


@app.get("/score/<name>")
def score(name: str):  # type: ignore[no-untyped-def]
    db = sqlite3.connect(":memory:")
    cur = db.cursor()  # DB-API cursors are what the sqlite3 instrumentation traces
    cur.execute("CREATE TABLE t (name TEXT, v REAL)")
    cur.execute("INSERT INTO t VALUES (?, ?)", (name, 0.9))
    cur.execute("SELECT v FROM t WHERE name = ?", (name,))
    value = cur.fetchone()[0]
    weight = requests.get(UPSTREAM, timeout=5).json()["weight"]
    return jsonify(score=value * weight * 100)


@app.get("/boom")
def boom():  # type: ignore[no-untyped-def]
    raise RuntimeError("boom")


def _stop(*_: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    app.run(host="127.0.0.1", port=int(sys.argv[1]), threaded=True)
