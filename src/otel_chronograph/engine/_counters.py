"""What a completion policy counts (live assembly and the per-trace buffer share one set of names, so
health metrics read the same whatever the source)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CompletionStats"]


@dataclass(slots=True)
class CompletionStats:
    spans: int = 0  # spans taken in (per-trace buffer)
    evicted: int = 0  # pending laps evicted at max_pending_traces (live assembly)
    dropped_spans: int = 0  # spans over max_spans_per_trace
    late_spans: int = 0  # spans that arrived (or were still open) after their lap was decided
    duplicate_spans: int = 0  # spans delivered again while their trace was pending (kept once)
    forced: int = 0  # laps/traces completed early: grace period over, or room needed
    refused: int = 0  # requests refused at the bound (backpressure)
    decided: int = 0  # traces decided
