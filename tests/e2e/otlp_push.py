"""Push chronograph-shaped telemetry to an OTLP endpoint with the plain OpenTelemetry SDK.

Used by the smoke test (tests/e2e/test_peers_smoke.py) to prove the Collector -> Jaeger /
Prometheus plumbing without the plugin, and runnable by hand to see what the Collector's
prometheus exporter makes of the plugin's metric names::

    python tests/e2e/otlp_push.py 127.0.0.1:4317

It records exactly the instruments the core emits (meter ``otel_chronograph``):
``chronograph.lap.duration`` / ``chronograph.sector.duration`` (histograms, ms),
``chronograph.cost`` (counter), ``chronograph.pending_traces`` and ``chronograph.outbox.depth``
(observable gauges), ``chronograph.evicted_traces`` and ``chronograph.outbox.{delivered,
dead_lettered,retried}`` (counters); and one lap trace (root span + sector children).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind

COMMANDS = ("faf score", "faf sync")
SECTORS = ("init", "load", "exec", "format")


@dataclass
class ChronographTelemetry:
    """An SDK pipeline exporting OTLP/gRPC to ``endpoint`` (host:port) with ``service_name``."""

    endpoint: str
    service_name: str = "chronograph-smoke"
    export_interval_ms: int = 500
    pending: int = 3
    outbox_depth: int = 1
    trace_ids: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        resource = Resource.create({"service.name": self.service_name, "service.instance.id": "smoke-1"})
        self.reader = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"http://{self.endpoint}", insecure=True),
            export_interval_millis=self.export_interval_ms,
        )
        self.meter_provider = MeterProvider(resource=resource, metric_readers=[self.reader])
        self.tracer_provider = TracerProvider(resource=resource)
        self.tracer_provider.add_span_processor(
            BatchSpanProcessor(
                OTLPSpanExporter(endpoint=f"http://{self.endpoint}", insecure=True), schedule_delay_millis=200
            )
        )
        meter = self.meter_provider.get_meter("otel_chronograph")
        self.lap_duration = meter.create_histogram(
            "chronograph.lap.duration", unit="ms", description="Lap time"
        )
        self.sector_duration = meter.create_histogram(
            "chronograph.sector.duration", unit="ms", description="Sector time within a lap"
        )
        self.cost = meter.create_counter("chronograph.cost", description="Usage cost of laps")
        self.evicted = meter.create_counter(
            "chronograph.evicted_traces", description="Traces evicted before completion"
        )
        self.delivered = meter.create_counter("chronograph.outbox.delivered", description="Outbox deliveries")
        self.dead_lettered = meter.create_counter(
            "chronograph.outbox.dead_lettered", description="Outbox failures"
        )
        self.retried = meter.create_counter("chronograph.outbox.retried", description="Outbox retries")
        meter.create_observable_gauge(
            "chronograph.pending_traces",
            callbacks=[self._observe_pending],
            unit="1",
            description="Traces awaiting completion",
        )
        meter.create_observable_gauge(
            "chronograph.outbox.depth",
            callbacks=[self._observe_depth],
            unit="{entry}",
            description="Outbox entries not delivered yet",
        )
        self.tracer = self.tracer_provider.get_tracer("otel_chronograph")

    def _observe_pending(self, _options: CallbackOptions) -> list[Observation]:
        return [Observation(self.pending)]

    def _observe_depth(self, _options: CallbackOptions) -> list[Observation]:
        return [Observation(self.outbox_depth)]

    def record_laps(self, n: int = 5) -> None:
        """Record ``n`` laps per command (metrics only)."""
        for i in range(n):
            for command in COMMANDS:
                lap_ms = 40.0 + 60.0 * i
                status = "GREEN" if lap_ms < 100 else ("YELLOW" if lap_ms < 300 else "RED")
                tier = "pro" if i % 2 else "free"
                self.lap_duration.record(
                    lap_ms,
                    {"chronograph.command": command, "chronograph.status": status, "chronograph.tier": tier},
                )
                for j, sector in enumerate(SECTORS):
                    self.sector_duration.record(
                        lap_ms / (j + 2), {"chronograph.command": command, "chronograph.sector": sector}
                    )
                self.cost.add(
                    0.001 if tier == "pro" else 0.0,
                    {"chronograph.command": command, "chronograph.tier": tier},
                )
        self.evicted.add(1, {"chronograph.reason": "max_pending_traces"})
        self.delivered.add(n)
        self.dead_lettered.add(1)
        self.retried.add(2)

    def lap_trace(self, command: str = "faf score") -> str:
        """One lap: a SERVER root with chronograph attributes and 4 sector children; returns the trace id."""
        with self.tracer.start_as_current_span(
            command,
            kind=SpanKind.SERVER,
            attributes={"chronograph.lap": True, "chronograph.command": command, "chronograph.tier": "pro"},
        ) as root:
            for sector in SECTORS:
                with self.tracer.start_as_current_span(sector, attributes={"chronograph.sector": sector}):
                    pass
            root.set_attribute("chronograph.status", "GREEN")
            trace_id = format(root.get_span_context().trace_id, "032x")
        self.trace_ids.append(trace_id)
        return trace_id

    def flush(self) -> None:
        self.tracer_provider.force_flush()
        self.meter_provider.force_flush()

    def shutdown(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def main(argv: list[str]) -> int:
    endpoint = argv[1] if len(argv) > 1 else "127.0.0.1:4317"
    t = ChronographTelemetry(endpoint)
    print("trace", t.lap_trace())
    for _ in range(3):
        t.record_laps()
        t.flush()
        time.sleep(1)  # a CLI demo spreading laps over a few export intervals, not synchronisation
    t.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
