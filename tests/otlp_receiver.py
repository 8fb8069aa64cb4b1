"""A real OTLP/HTTP receiver on 127.0.0.1 for tests: decodes protobuf trace and metric exports."""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2


def _attrs(kvs: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in kvs:
        value = kv.get("value", {})
        for key in ("stringValue", "boolValue", "doubleValue"):
            if key in value:
                out[kv["key"]] = value[key]
        if "intValue" in value:
            out[kv["key"]] = int(value["intValue"])
    return out


class OTLPReceiver:
    """Collects exported spans (as dicts with decoded attributes) and metric names/points."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.metrics: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path == "/v1/traces" and self.headers.get("Content-Type") == "application/json":
                    receiver._add_spans(json.loads(body))  # OTLP JSON: the same keys as MessageToDict
                    reply = b"{}"
                elif self.path == "/v1/traces":
                    req = trace_service_pb2.ExportTraceServiceRequest()
                    req.ParseFromString(body)
                    receiver._add_spans(MessageToDict(req))
                    reply = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/metrics":
                    mreq = metrics_service_pb2.ExportMetricsServiceRequest()
                    mreq.ParseFromString(body)
                    receiver._add_metrics(MessageToDict(mreq))
                    reply = metrics_service_pb2.ExportMetricsServiceResponse().SerializeToString()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> OTLPReceiver:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _add_spans(self, doc: dict[str, Any]) -> None:
        with self._lock:
            for rs in doc.get("resourceSpans", []):
                resource = _attrs(rs.get("resource", {}).get("attributes", []))
                for ss in rs.get("scopeSpans", []):
                    for span in ss.get("spans", []):
                        span["attributes"] = _attrs(span.get("attributes", []))
                        span["resource"] = resource
                        self.spans.append(span)

    def _add_metrics(self, doc: dict[str, Any]) -> None:
        with self._lock:
            for rm in doc.get("resourceMetrics", []):
                for sm in rm.get("scopeMetrics", []):
                    for metric in sm.get("metrics", []):
                        metric["scope"] = sm.get("scope", {})
                        self.metrics.append(metric)

    def metric(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for m in self.metrics if m.get("name") == name]

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 30.0, what: str = "data") -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout}s waiting for {what}")
            time.sleep(0.05)
