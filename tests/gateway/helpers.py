"""Helpers for the gateway tests: config files, an in-process gateway, a real gRPC OTLP sink, the SDK
exporters as clients, and the spans a sink received."""

from __future__ import annotations

import contextlib
import sys
import threading
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import yaml
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from otel_chronograph._worker import Deadline
from otel_chronograph.gateway import Gateway, load_gateway_config
from otel_chronograph.sources._otlp import value_from_proto

CHRONOGRAPH = str(Path(sys.executable).with_name("chronograph"))


def write_config(tmp_path: Path, exporters: dict[str, Any], chronograph: dict[str, Any] | None = None,
                 metrics_endpoint: str | None = "127.0.0.1:0", name: str = "gateway.yaml",
                 protocols: dict[str, Any] | None = None) -> Path:
    """A gateway file listening on free ports, exporting to ``exporters`` (id -> config)."""
    doc = {
        "receivers": {"otlp": {"protocols": protocols or {"grpc": {"endpoint": "127.0.0.1:0"},
                                                          "http": {"endpoint": "127.0.0.1:0"}}}},
        "processors": {"chronograph": {"recorder": {"enabled": False}, **(chronograph or {})}},
        "exporters": exporters,
        "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["chronograph"],
                                             "exporters": list(exporters)}},
                    "telemetry": {"metrics": {"endpoint": metrics_endpoint} if metrics_endpoint else {}}},
    }
    path = tmp_path / name
    path.write_text(yaml.safe_dump(doc))
    return path


@contextlib.contextmanager
def running_gateway(config: Path, token: str | None = None) -> Iterator[Gateway]:
    gw = Gateway(load_gateway_config(config, environ={}), token=token)
    gw.start()
    try:
        yield gw
    finally:
        gw.stop(Deadline(10.0))


def port_of(gw: Gateway, kind: str) -> int:
    return next(r.port for r in gw.receivers if type(r).__name__.lower().startswith(kind))



def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        return str(resp.read().decode())


def metric_value(text: str, name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` (or ``name_total``) whose labels include ``labels`` (0 when
    absent)."""
    total = 0.0
    for line in text.splitlines():
        if not any(line.startswith(n + "{") or line.startswith(n + " ") for n in (name, name + "_total")):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total


# -- a real OTLP/gRPC sink -------------------------------------------------------------------------


def flat_spans(request: Any) -> list[dict[str, Any]]:
    out = []
    for rs in request.resource_spans:
        resource = {kv.key: value_from_proto(kv.value) for kv in rs.resource.attributes}
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append({"trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(), "name": s.name,
                            "parent": s.parent_span_id.hex(), "scope": ss.scope.name,
                            "attributes": {kv.key: value_from_proto(kv.value) for kv in s.attributes},
                            "resource": resource})
    return out


class GrpcSink:
    """An OTLP/gRPC trace server on 127.0.0.1 recording every span; ``fail_with`` makes the next
    ``fail_times`` calls fail with that status (and RetryInfo when ``retry_after`` is set)."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.calls = 0
        self.fail_with: grpc.StatusCode | None = None
        self.fail_times = 0
        self.retry_after: int | None = None
        self._lock = threading.Lock()
        sink = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):  # type: ignore[misc]
            def Export(self, request: Any, context: Any) -> Any:
                with sink._lock:
                    sink.calls += 1
                    if sink.fail_times > 0 and sink.fail_with is not None:
                        sink.fail_times -= 1
                        if sink.retry_after is not None:
                            from otel_chronograph.gateway._receiver import _retry_metadata

                            context.set_trailing_metadata(_retry_metadata(sink.retry_after, 8, "busy"))
                        context.abort(sink.fail_with, "test sink refuses")
                    sink.spans.extend(flat_spans(request))
                return trace_service_pb2.ExportTraceServiceResponse()

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.endpoint = f"127.0.0.1:{self.port}"

    def __enter__(self) -> GrpcSink:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(0).wait(5)

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.spans)

    def exporter(self, **extra: Any) -> dict[str, Any]:
        """The gateway's ``otlp_grpc`` exporter config for this sink (fast retries)."""
        return {"endpoint": self.endpoint, "tls": {"insecure": True}, "compression": "none",
                "retry_on_failure": {"initial_interval": "50ms", "max_interval": "200ms"}, **extra}


def laps_of(spans: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [s for s in spans if "chronograph.lap_ms" in s["attributes"]]


# -- clients ---------------------------------------------------------------------------------------


def sdk_provider(service: str, exporter: Any) -> TracerProvider:
    """A real SDK TracerProvider exporting synchronously through ``exporter`` (the client under test)."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider
