"""A child that knows nothing about chronograph exec or TRACEPARENT: it just traces (auto-instrumented)."""

from __future__ import annotations

import sqlite3

from opentelemetry import trace

import otel_chronograph as chrono

tracer = trace.get_tracer("plain_child")
with tracer.start_as_current_span("plain main"):
    with chrono.sector("load"):
        sqlite3.connect(":memory:").cursor().execute("select 1")
    print("plain done", flush=True)
