"""The gateway's own MeterProvider: the SPEC.md lap instruments and the gateway's health, exported
through ``service.pipelines.metrics.exporters`` and served in Prometheus text format on
``service.telemetry.metrics.endpoint`` (``/metrics``), like the Collector's own telemetry.

The resource is ``service.name=chronograph-gateway`` with a ``service.instance.id`` per process (both
overridable with ``OTEL_SERVICE_NAME`` / ``OTEL_RESOURCE_ATTRIBUTES``), so several gateways behind one
Collector stay separate series. Readers export every ``OTEL_METRIC_EXPORT_INTERVAL`` ms (SDK default 60 s).
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass, field
from typing import Any

from ._config import (
    DebugExporterConfig,
    ExporterConfig,
    GatewayConfig,
    OtlpGrpcExporterConfig,
    OtlpHttpExporterConfig,
)

__all__ = ["Telemetry", "make_telemetry"]


@dataclass
class Telemetry:
    meter_provider: Any
    prometheus_port: int | None = None
    _server: Any = None
    _closed: list[bool] = field(default_factory=lambda: [False])

    def shutdown(self, timeout_s: float) -> None:
        if self._closed[0]:
            return
        self._closed[0] = True
        try:
            self.meter_provider.shutdown(timeout_millis=max(timeout_s, 0.1) * 1000)
        finally:
            if self._server is not None:
                self._server.shutdown()
                self._server.server_close()


def _metric_exporter(etype: str, cfg: ExporterConfig) -> Any:
    if etype == "otlp_grpc":
        from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as GrpcExporter

        assert isinstance(cfg, OtlpGrpcExporterConfig)
        endpoint = cfg.endpoint
        insecure = cfg.tls.insecure or endpoint.startswith("http://")
        if "://" not in endpoint:
            endpoint = ("http://" if insecure else "https://") + endpoint
        return GrpcExporter(endpoint=endpoint, insecure=insecure, headers=dict(cfg.headers) or None,
                            timeout=cfg.timeout)
    if etype == "otlp_http":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as HttpExporter

        assert isinstance(cfg, OtlpHttpExporterConfig)
        url = cfg.metrics_endpoint or f"{(cfg.endpoint or '').rstrip('/')}/v1/metrics"
        return HttpExporter(endpoint=url, headers=dict(cfg.headers) or None, timeout=cfg.timeout)
    if etype == "debug":
        from opentelemetry.sdk.metrics.export import ConsoleMetricExporter

        assert isinstance(cfg, DebugExporterConfig)
        return ConsoleMetricExporter(out=sys.stderr)
    return None  # nop


def make_telemetry(config: GatewayConfig) -> Telemetry:
    """The MeterProvider with its readers; the Prometheus endpoint listening (RuntimeError if it can't)."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    readers: list[Any] = []
    for etype, cfg in config.metrics_exporters.values():
        exporter = _metric_exporter(etype, cfg)
        if exporter is not None:
            readers.append(PeriodicExportingMetricReader(exporter))
    metrics = config.telemetry.metrics
    server = None
    port = None
    if metrics.endpoint is not None and metrics.level != "none":
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry()
        readers.append(PrometheusMetricReader(registry=registry))
        host, _, text = metrics.endpoint.rpartition(":")
        try:
            server, _thread = start_http_server(int(text), host.strip("[]"), registry)
        except OSError as exc:
            raise RuntimeError(f"cannot serve metrics on {metrics.endpoint} "
                               f"(service.telemetry.metrics.endpoint): {exc.strerror or exc}") from None
        port = int(server.server_port)
    from opentelemetry.sdk.resources import OTELResourceDetector

    from_env = OTELResourceDetector().detect().attributes  # OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    resource = Resource.create({"service.name": "chronograph-gateway",
                                "service.instance.id": str(uuid.uuid4()), **from_env})
    return Telemetry(MeterProvider(metric_readers=readers, resource=resource), port, server)
