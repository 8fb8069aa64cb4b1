"""Issue 9 item 9: the Chrome-trace and folded-stack renderings are linear in the number of spans, also
for a 20,000-deep lap (they took 62 s and 116 s); the results still nest and still sum up."""

from __future__ import annotations

from decimal import Decimal

import pytest

from otel_chronograph import Lap, SectorSpan
from otel_chronograph.recorder import folded_stacks, to_chrome_trace
from otel_chronograph.recorder._render import MAX_STACK_FRAMES

US = 1000


def deep_lap(depth: int) -> Lap:
    """A chain: each span the only child of the one before, each 1 µs shorter on both ends... then 1 µs
    of self time at the bottom."""
    spans = [SectorSpan("s", f"n{i}", f"{i + 1:016x}", f"{i:016x}", i * US, (2 * depth - i) * US)
             for i in range(depth)]
    return Lap(request_id="req_0000000000000000", trace_id="0" * 32, span_id=f"{0:016x}", command="deep",
               timestamp=0, start_ns=0, end_ns=2 * depth * US, lap_ms=2 * depth / 1000, other_ms=0.0,
               sectors={}, critical_path={}, critical_other_ms=0.0, status="GREEN", error=False,
               tier="free", customer=None, score=None, cost=Decimal(0), spans=list(reversed(spans)))


@pytest.mark.timeout(30)
def test_a_20000_deep_lap_renders_in_linear_time() -> None:
    lap = deep_lap(20_000)
    trace = to_chrome_trace(lap)
    slices = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    assert len(slices) == 20_001
    assert {e["tid"] for e in slices} == {1}  # a chain nests: one track
    folded = folded_stacks(lap)
    lines = folded.splitlines()
    assert sum(int(line.rsplit(" ", 1)[1]) for line in lines) == 2 * 20_000  # µs of self time, all of it
    assert max(line.count(";") for line in lines) <= MAX_STACK_FRAMES


def test_overlapping_siblings_go_to_parallel_tracks() -> None:
    lap = deep_lap(1)
    lap.spans = [SectorSpan("a", "a", "a" * 16, "0" * 16, 0, 10 * US),
                 SectorSpan("b", "b", "b" * 16, "0" * 16, 5 * US, 15 * US),
                 SectorSpan("c", "c", "c" * 16, "a" * 16, 1 * US, 2 * US)]
    lap.end_ns = 20 * US
    tids = {e["name"]: e["tid"] for e in to_chrome_trace(lap)["traceEvents"] if e.get("ph") == "X"}
    assert tids["a"] == tids["c"] == 1 and tids["b"] == 2
