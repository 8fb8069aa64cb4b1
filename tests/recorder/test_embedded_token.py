"""Issue 9 item 5: the embedded API (`get_recorder().serve()`) honours CHRONOGRAPH_API_TOKEN exactly as
`chronograph serve` does: flight records (customer ids included) are never served without it."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider

import otel_chronograph as chrono
from otel_chronograph.recorder import get_recorder


def test_embedded_api_requires_the_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHRONOGRAPH_API_TOKEN", "s3cret")
    provider = TracerProvider()
    processor = chrono.install(provider, config={"recorder": {"enabled": True}})
    with chrono.lap("faf score", customer="cus_private", tracer_provider=provider):
        pass
    processor.force_flush()
    recorder = get_recorder()
    assert recorder is not None
    server = recorder.serve(port=0)
    try:
        base = f"http://127.0.0.1:{server.port}/api/v1/flight-recorder"
        assert httpx.get(base, timeout=10).status_code == 401
        assert httpx.get(base, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
        ok = httpx.get(base, headers={"Authorization": "Bearer s3cret"}, timeout=10)
        assert ok.status_code == 200 and ok.json()["count"] == 1
        rid = ok.json()["records"][0]["id"]
        assert httpx.get(f"{base}/{rid}", timeout=10).status_code == 401
        one = httpx.get(f"{base}/{rid}", headers={"Authorization": "Bearer s3cret"}, timeout=10)
        assert one.status_code == 200 and "cus_private" in one.text
    finally:
        server.stop()
        processor.shutdown()
