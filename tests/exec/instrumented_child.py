"""A child run by ``chronograph exec`` under ``opentelemetry-instrument``: it joins the trace from the
environment carriers (TRACEPARENT), works in a ``load`` sector with a real SQLite query (instrumented),
then renders outside any sector (counts toward ``run``)."""

from __future__ import annotations

import os
import sqlite3

from opentelemetry import context, propagate, trace

import otel_chronograph as chrono

carrier = {name.lower(): os.environ[name] for name in ("TRACEPARENT", "TRACESTATE", "BAGGAGE")
           if name in os.environ}
token = context.attach(propagate.extract(carrier))
tracer = trace.get_tracer("instrumented_child")
with tracer.start_as_current_span("child main"):
    with chrono.sector("load"):
        cursor = sqlite3.connect(":memory:").cursor()
        cursor.execute("create table t (x integer)")
        cursor.executemany("insert into t values (?)", [(i,) for i in range(2000)])
        cursor.execute("select sum(x) from t")
        total = cursor.fetchone()[0]
    with tracer.start_as_current_span("render"):
        print(f"total {total}", flush=True)
context.detach(token)
