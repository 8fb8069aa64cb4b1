"""Hostile query strings found by fuzzing: a 5,000-digit n and a query that is not UTF-8 are 400s."""

from __future__ import annotations

import asyncio
from typing import Any

from otel_chronograph.recorder import FlightStore
from otel_chronograph.recorder._server import create_app


def call(query: bytes) -> int:
    app = create_app(FlightStore(None), token=None)
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": "/api/v1/flight-recorder", "raw_path": b"/api/v1/flight-recorder",
             "query_string": query, "headers": [], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
    asyncio.run(app(scope, receive, send))
    return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))


def test_a_five_thousand_digit_n_is_a_400() -> None:
    assert call(b"n=" + b"9" * 5000) == 400


def test_a_query_that_is_not_utf8_is_a_400() -> None:
    assert call(b"command=%ff%fe&n=\xff") == 400
