"""Two real FastAPI services for the gateway's end-to-end test, instrumented by `opentelemetry-instrument`
with the plain OpenTelemetry distro: no chronograph code or processor in them. ``app_a`` handles
``/checkout/{n}`` (a SQLite query, then two calls to ``app_b``'s ``/stock/{n}``, which runs its own
query). Each copies W3C baggage into span attributes with the upstream BaggageSpanProcessor, which is
how an app hands identity to the gateway (OTLP carries no baggage)."""

from __future__ import annotations

import os
import sqlite3

import httpx
from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.processor.baggage import ALLOW_ALL_BAGGAGE_KEYS, BaggageSpanProcessor

trace.get_tracer_provider().add_span_processor(  # type: ignore[attr-defined]
    BaggageSpanProcessor(ALLOW_ALL_BAGGAGE_KEYS))

app_a = FastAPI()
app_b = FastAPI()
B_URL = os.environ.get("B_URL", "")


def _query(n: int) -> float:
    db = sqlite3.connect(":memory:")
    try:
        cur = db.cursor()  # the dbapi instrumentation traces cursor.execute
        cur.execute("SELECT ? * 1.5", (n,))
        return float(cur.fetchone()[0])
    finally:
        db.close()


@app_a.get("/checkout/{n}")
async def checkout(n: int) -> dict[str, float]:
    base = _query(n)
    async with httpx.AsyncClient() as client:
        stock = [(await client.get(f"{B_URL}/stock/{n + i}", timeout=20)).json()["stock"] for i in range(2)]
    return {"total": base + sum(stock)}


@app_b.get("/stock/{n}")
def stock(n: int) -> dict[str, float]:
    return {"stock": _query(n)}


@app_a.get("/healthz")
@app_b.get("/healthz")
def healthz() -> str:
    return "ok"
