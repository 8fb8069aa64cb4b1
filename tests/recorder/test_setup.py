"""The recorder stage plugs into install(): on when configured, deferred, core dependencies only."""

from __future__ import annotations

import subprocess
import sys

from opentelemetry.sdk.trace import TracerProvider

import otel_chronograph as chrono
from otel_chronograph.recorder import FlightRecorder, get_recorder


def test_enabled_recorder_is_a_deferred_sink_reachable_in_process() -> None:
    proc = chrono.install(TracerProvider(), config={"recorder": {"enabled": True, "max_records": 7}})
    try:
        rec = get_recorder()
        assert isinstance(rec, FlightRecorder) and rec.store.max_records == 7
        assert rec in proc.deferred.sinks and rec not in proc.sinks
    finally:
        proc.shutdown()


def test_disabled_recorder_adds_no_sink() -> None:
    proc = chrono.install(TracerProvider(), config={"recorder": {"enabled": False}})
    try:
        assert not any(isinstance(s, FlightRecorder) for s in [*proc.sinks, *proc.deferred.sinks])
    finally:
        proc.shutdown()


def test_importing_the_recorder_needs_no_server_or_tui_dependency() -> None:
    code = ("import sys, otel_chronograph.recorder; "
            "print(sorted(m for m in ('starlette', 'uvicorn', 'textual', 'httpx') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
