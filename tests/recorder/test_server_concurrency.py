"""Issue 9 item 9: the API never does store reads or renderings on its event loop. While slow record
requests are in flight (their store reads blocked), /healthz and other requests still answer; past the
bound the API answers 503 with Retry-After instead of queueing without limit."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx

from otel_chronograph.recorder import FlightStore
from otel_chronograph.recorder._server import MAX_BUSY, create_app

from .helpers import synthetic_lap


class SlowStore(FlightStore):
    """A real in-memory store whose record reads wait for a release (a 20,000-span render, say)."""

    def __init__(self) -> None:
        super().__init__(None)
        self.release = threading.Event()
        self.entered = threading.Semaphore(0)

    def get(self, ident: str) -> Any:
        self.entered.release()
        self.release.wait(30)
        return super().get(ident)


async def test_healthz_answers_while_slow_requests_run_and_overload_is_503() -> None:
    store = SlowStore()
    store.add(synthetic_lap(1))
    transport = httpx.ASGITransport(app=create_app(store, token=None))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        slow = [asyncio.create_task(client.get("/api/v1/flight-recorder/req_0000000000000001/chrome-trace"))
                for _ in range(MAX_BUSY)]
        for _ in range(MAX_BUSY):  # all of them are inside a blocked store read now
            await asyncio.to_thread(store.entered.acquire, True, 10)
        health = await client.get("/healthz")
        assert health.status_code == 200  # the loop is free
        over = await client.get("/api/v1/flight-recorder/req_0000000000000001")
        assert over.status_code == 503 and over.headers["Retry-After"] == "1"
        store.release.set()
        done = await asyncio.gather(*slow)
        assert all(r.status_code == 200 for r in done)
