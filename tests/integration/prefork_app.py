"""A WSGI app for a real prefork server (gunicorn --preload): chronograph is installed in the master
at import, and a first lap runs there before the workers fork, so every background thread already
exists in the parent (the case that used to leave forked workers without metrics or flight records)."""

from __future__ import annotations

# Before any MeterProvider exists: the SDK (1.45) re-detects resources in a ThreadPoolExecutor in its
# after-fork hook, which deadlocks when concurrent.futures.thread registers its own fork hooks later
# (its lock is still held by its "before" hook). An upstream issue; see docs/fork.md.
import concurrent.futures.thread  # noqa: F401
import os
import sqlite3

from flask import Flask
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

import otel_chronograph as chrono

resource = Resource({"service.name": "prefork"})
reader = PeriodicExportingMetricReader(
    # Delta: each worker reports only its own laps (cumulative series of forked workers look alike).
    OTLPMetricExporter(endpoint=os.environ["TEST_OTLP"] + "/v1/metrics",
                       preferred_temporality={Histogram: AggregationTemporality.DELTA}),
    export_interval_millis=300)
meter_provider = MeterProvider(metric_readers=[reader], resource=resource)
metrics.set_meter_provider(meter_provider)
provider = TracerProvider(resource=resource)
trace.set_tracer_provider(provider)
chrono.install(provider, config={
    "recorder": {"persistent": True, "path": os.environ["TEST_DB"]},
    "sectors": {"rules": [{"name": "storage", "match": {"attribute": "db.system"}}]},
})

with chrono.lap("warmup"):  # before fork: starts the sink worker, the recorder writer, the reader
    pass

app = Flask(__name__)
FlaskInstrumentor().instrument_app(app)


@app.get("/work")
def work() -> str:
    with chrono.sector("compute"):
        db = sqlite3.connect(":memory:")
        db.execute("SELECT 1").fetchone()
        db.close()
    return f"ok {os.getpid()}"
