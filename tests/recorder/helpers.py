"""Shared helpers for the flight recorder tests: real laps through the pipeline, synthetic laps, servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from opentelemetry.sdk.trace import TracerProvider

import otel_chronograph as chrono
from otel_chronograph import Lap, LapEvent, SectorSpan
from otel_chronograph.recorder import FlightRecorder, get_recorder
from tests.core.helpers import wait_for

CHRONOGRAPH = str(Path(sys.executable).with_name("chronograph"))


@contextmanager
def recording(**recorder: Any) -> Iterator[tuple[TracerProvider, Any, FlightRecorder]]:
    """A provider with the chronograph processor and a flight recorder configured by ``recorder``."""
    provider = TracerProvider()
    proc = chrono.install(provider, config={"recorder": {"enabled": True, **recorder}})
    rec = get_recorder()
    assert rec is not None
    try:
        yield provider, proc, rec
    finally:
        proc.shutdown()
        rec.store.close()


def synthetic_lap(i: int, command: str = "faf score", lap_ms: float = 10.0, start_ns: int | None = None,
                  status: str = "GREEN", session: str | None = "conv-1", error: bool = False) -> Lap:
    """A four-sector lap built directly (fast, deterministic) for store and rendering tests."""
    start = start_ns if start_ns is not None else time.time_ns() - 60_000_000_000 + i * 1_000_000
    span_id = f"{i:016x}"
    total = int(lap_ms * 1e6)
    quarter = total // 5
    spans, sectors, t = [], {}, start
    for k, name in enumerate(("init", "load", "exec", "format")):
        spans.append(SectorSpan(name, name, f"{(i + 1) * 16 + k + 1:016x}"[-16:], span_id, t, t + quarter))
        sectors[name] = quarter / 1e6
        t += quarter
    events = [LapEvent("Embedding Classifier", start + quarter, quarter / 1e6, "init", "init",
                       {"confidence": 0.92, "winner": "complex"})]
    return Lap(
        request_id="req_" + span_id, trace_id=f"{i:032x}", span_id=span_id, command=command,
        timestamp=start // 1_000_000, start_ns=start, end_ns=start + total, lap_ms=total / 1e6,
        other_ms=(total - 4 * quarter) / 1e6, sectors=sectors, critical_path=dict(sectors),
        critical_other_ms=(total - 4 * quarter) / 1e6, status=status,  # type: ignore[arg-type]
        error=error, tier="pro", customer=None, score=None, cost=Decimal("0.001"), events=events,
        spans=spans, session_id=session, service_name="test",
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])



@contextmanager
def server_process(db: Path, token: str | None = None) -> Iterator[str]:
    """``chronograph serve --db db`` on a free port of 127.0.0.1; yields the base URL once /healthz is up."""
    env = dict(os.environ)
    env.pop("CHRONOGRAPH_API_TOKEN", None)
    if token is not None:
        env["CHRONOGRAPH_API_TOKEN"] = token
    port = free_port()
    proc = subprocess.Popen([CHRONOGRAPH, "serve", "--db", str(db), "--port", str(port)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited: {proc.communicate()[1].decode()}")
        try:
            return httpx.get(url + "/healthz", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(ready, 20, "the server's /healthz")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
