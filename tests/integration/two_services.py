"""Two real FastAPI services for the shutdown test: A handles /order and calls B's /price three times.
Neither imports otel_chronograph: laps come from `opentelemetry-instrument` with its configurator."""

from __future__ import annotations

import os
import sqlite3

import httpx
from fastapi import FastAPI

app_a = FastAPI()
app_b = FastAPI()
B_URL = os.environ.get("B_URL", "")


@app_a.get("/order/{n}")
async def order(n: int) -> dict[str, float]:
    async with httpx.AsyncClient() as client:
        prices = [(await client.get(f"{B_URL}/price/{n}/{i}", timeout=10)).json()["price"] for i in range(3)]
    return {"total": sum(prices)}


@app_b.get("/price/{n}/{i}")
def price(n: int, i: int) -> dict[str, float]:
    db = sqlite3.connect(":memory:")
    cur = db.cursor()
    cur.execute("SELECT ? * 1.5", (n + i,))
    value = float(cur.fetchone()[0])
    db.close()
    return {"price": value}


@app_a.get("/healthz")
@app_b.get("/healthz")
def healthz() -> str:
    return "ok"
