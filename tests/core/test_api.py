"""lap()/sector() as context managers and decorators, sync and async, with a given TracerProvider."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import otel_chronograph as chrono
from otel_chronograph import Lap

from .conftest import Harness


def test_lap_and_sector_spans_carry_the_spec_attributes(harness: Harness) -> None:
    with harness.lap("faf score", tier="pro", customer="cus_123", score=99, session_id="sess-1",
                     extra="x") as handle:
        with harness.sector("init"):
            pass
        handle.event("Embedding Classifier", confidence=0.92, winner="complex")
    spans = {s.name: s for s in harness.exported()}
    lap_attrs = spans["faf score"].attributes
    assert lap_attrs["chronograph.lap"] is True
    assert lap_attrs["chronograph.command"] == "faf score"
    assert lap_attrs["chronograph.tier"] == "pro"
    assert lap_attrs["chronograph.customer"] == "cus_123"
    assert lap_attrs["chronograph.score"] == 99
    assert lap_attrs["session.id"] == "sess-1"
    assert lap_attrs["extra"] == "x"
    assert spans["init"].attributes["chronograph.sector"] == "init"
    assert spans["init"].parent.span_id == spans["faf score"].context.span_id
    assert spans["faf score"].kind is SpanKind.INTERNAL


def test_telemetry_is_available_right_after_the_block(harness: Harness) -> None:
    with harness.lap("faf score", tier="pro") as handle:
        assert handle.telemetry is None
        with harness.sector("init"):
            pass
        with harness.sector("load"):
            pass
        handle.event("milestone", n=1)
    lap = handle.telemetry
    assert isinstance(lap, Lap)
    assert lap.request_id == handle.request_id
    assert list(lap.sectors) == ["init", "load"]
    assert [e.name for e in lap.events] == ["milestone"]
    assert lap.events[0].attributes == {"n": 1}
    assert lap.tier == "pro"
    json.dumps(lap.to_json())


def test_module_level_event_goes_on_the_current_span(harness: Harness) -> None:
    with harness.lap("cmd") as handle:
        with harness.sector("s"):
            chrono.event("inside sector", k="v")
        chrono.event("on lap")
    events = handle.telemetry.events
    assert [(e.name, e.sector) for e in events] == [("inside sector", "s"), ("on lap", None)]


def test_nested_sectors_and_nested_laps(harness: Harness) -> None:
    with harness.lap("outer") as outer:
        with harness.sector("a"), harness.sector("b"):
            pass
        with harness.lap("inner") as inner, harness.sector("c"):
            pass
    assert list(outer.telemetry.sectors) == ["a", "b", "c"]
    assert list(inner.telemetry.sectors) == ["c"]
    assert outer.telemetry.trace_id == inner.telemetry.trace_id
    assert outer.telemetry.request_id != inner.telemetry.request_id
    assert len(harness.annotated()) == 2


def test_kind_parameter(harness: Harness) -> None:
    with harness.lap("srv", kind=SpanKind.SERVER):
        pass
    (span,) = harness.exported()
    assert span.kind is SpanKind.SERVER
    assert len(harness.laps) == 1  # a lap once, even though it is also an auto SERVER root


def test_exception_propagates_and_marks_the_lap(harness: Harness) -> None:
    with pytest.raises(KeyError), harness.lap("cmd") as handle, harness.sector("s"):
        raise KeyError("k")
    assert handle.telemetry.error is True
    spans = {s.name: s for s in harness.exported()}
    assert spans["s"].status.status_code is StatusCode.ERROR
    assert any(e.name == "exception" for e in spans["cmd"].events)


def test_sync_decorators(harness: Harness) -> None:
    @harness.sector("work")
    def work(x: int) -> int:
        return x * 2

    @harness.lap("decorated", tier="pro")
    def handler(x: int) -> int:
        return work(x) + 1

    assert handler.__name__ == "handler"
    assert handler(20) == 41
    assert handler(1) == 3
    assert len(harness.laps) == 2
    assert all(lap.sectors.keys() == {"work"} for lap in harness.laps)
    assert harness.laps[0].request_id != harness.laps[1].request_id


async def test_async_decorators_and_async_with(harness: Harness) -> None:
    @harness.sector("fetch")
    async def fetch() -> str:
        await asyncio.sleep(0)
        return "data"

    @harness.lap("async cmd")
    async def handler() -> str:
        return await fetch()

    assert asyncio.iscoroutinefunction(handler)
    assert await handler() == "data"
    async with harness.lap("async with") as handle, harness.sector("s"):
        await asyncio.sleep(0)
    assert handle.telemetry is not None and list(handle.telemetry.sectors) == ["s"]
    assert [lap.command for lap in harness.laps] == ["async cmd", "async with"]
    assert list(harness.laps[0].sectors) == ["fetch"]


async def test_concurrent_calls_of_one_decorated_coroutine_do_not_mix(harness: Harness) -> None:
    gate = asyncio.Event()

    @harness.lap("task")
    async def handler(i: int) -> int:
        async with harness.sector(f"s{i}"):
            await gate.wait()
        return i

    tasks = [asyncio.create_task(handler(i)) for i in range(20)]
    await asyncio.sleep(0)
    gate.set()
    assert await asyncio.gather(*tasks) == list(range(20))
    assert sorted(tuple(lap.sectors) for lap in harness.laps) == sorted((f"s{i}",) for i in range(20))


def test_two_providers_do_not_mix(make_harness: type[Harness]) -> None:
    h1, h2 = make_harness(), make_harness()
    with h1.lap("one"), h1.sector("a"):
        pass
    with h2.lap("two"), h2.sector("b"):
        pass
    assert [lap.command for lap in h1.laps] == ["one"]
    assert [lap.command for lap in h2.laps] == ["two"]
    assert [s.name for s in h1.exported()] == ["a", "one"]


def test_global_provider_in_a_fresh_interpreter(tmp_path: object) -> None:
    """Without tracer_provider=, lap()/sector() use the global provider (needs a process of its own)."""
    code = textwrap.dedent("""
        import json
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import otel_chronograph as chrono

        provider = TracerProvider()
        trace.set_tracer_provider(provider)
        exporter = InMemorySpanExporter()
        chrono.install(span_processors=[SimpleSpanProcessor(exporter)],
                       config={"recorder": {"enabled": False}})

        @chrono.lap("decorated")
        def run():
            with chrono.sector("init"):
                pass

        run()
        with chrono.lap("faf score", tier="pro") as lap:
            with chrono.sector("init"):
                pass
        spans = exporter.get_finished_spans()
        print(json.dumps({"telemetry": lap.telemetry.to_json(),
                          "annotated": sorted(s.name for s in spans
                                              if "chronograph.request_id" in s.attributes)}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["annotated"] == ["decorated", "faf score"]
    assert result["telemetry"]["sectors"].keys() == {"s1_init"}
    assert result["telemetry"]["billing"]["tier"] == "pro"


def test_install_without_an_sdk_provider_is_a_clear_error() -> None:
    code = "import otel_chronograph as c\ntry:\n    c.install()\nexcept TypeError as e:\n    print(e)\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env={"PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    assert "SDK TracerProvider" in out.stdout
