"""Fixtures for the core unit tests: a real SDK TracerProvider wired through ``chrono.install``."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer

import otel_chronograph as chrono
from otel_chronograph import ChronographProcessor, Lap

_ENV = ("CHRONOGRAPH_CONFIG", "OTEL_CONFIG_FILE", "CHRONOGRAPH_ENABLED", "CHRONOGRAPH_SPLIT_TIMES",
        "CHRONOGRAPH_BILLING_ENABLED", "CHRONOGRAPH_TIER", "NO_COLOR")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in _ENV:
        monkeypatch.delenv(var, raising=False)


class Harness:
    """A TracerProvider whose exporting processor is wrapped by the chronograph processor."""

    def __init__(self, config: Mapping[str, Any] | None = None, split_times: bool = False) -> None:
        cfg: dict[str, Any] = {"display": {"split_times": split_times}, "recorder": {"enabled": False}}
        for key, value in (config or {}).items():
            if isinstance(value, Mapping) and isinstance(cfg.get(key), Mapping):
                cfg[key] = {**cfg[key], **value}
            else:
                cfg[key] = value
        self.provider = TracerProvider()
        self.exporter = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.processor: ChronographProcessor = chrono.install(
            self.provider, span_processors=[SimpleSpanProcessor(self.exporter)], config=cfg,
            meter_provider=self.meter_provider)
        self.laps: list[Lap] = []
        self.processor.add_sink(self.laps.append, deferred=False)
        self.tracer: Tracer = self.provider.get_tracer("tests.core")

    # -- conveniences -------------------------------------------------------------------------

    def lap(self, command: str, **kw: Any) -> Any:
        return chrono.lap(command, tracer_provider=self.provider, **kw)

    def sector(self, name: str, **kw: Any) -> Any:
        return chrono.sector(name, tracer_provider=self.provider, **kw)

    def exported(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def annotated(self) -> list[ReadableSpan]:
        return [s for s in self.exported() if "chronograph.request_id" in (s.attributes or {})]

    def metrics(self) -> dict[str, list[Any]]:
        """Metric name -> data points (after flushing the deferred sinks)."""
        self.processor.force_flush()
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
        return out

    def close(self) -> None:
        self.provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def make_harness() -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(config: Mapping[str, Any] | None = None, **kw: Any) -> Harness:
        h = Harness(config, **kw)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    return make_harness()
