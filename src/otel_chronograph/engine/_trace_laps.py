"""Laps from whole traces of ended spans: the path the gateway, ``chronograph derive`` and
``chronograph exec``'s receiver share (records -> decision_wait buffer -> lap scope -> engine)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .._config import ChronographConfig
from .._lap import Lap
from ._engine import Engine
from ._records import SpanRecord
from ._rules import compile_lap_rules
from ._scope import FoundLap, split_laps
from ._traces import PendingTrace, TraceBuffer

__all__ = ["TraceLaps"]


class TraceLaps:
    """Buffers records per trace and, once a trace is decided, derives its laps through ``engine``."""

    def __init__(self, engine: Engine, config: ChronographConfig | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        cfg = config if config is not None else engine.config
        laps = cfg.laps
        self.engine = engine
        self.scope = laps.scope
        self._auto = laps.auto_server_roots
        self._max_spans = laps.max_spans_per_trace
        self._decide = compile_lap_rules(laps.match)
        kwargs = {"clock": clock} if clock is not None else {}
        self.buffer = TraceBuffer(laps.decision_wait, laps.max_pending_traces, laps.max_spans_per_trace,
                                  **kwargs)

    def add(self, records: Iterable[SpanRecord], force_oldest: bool = False
            ) -> tuple[list[SpanRecord], list[PendingTrace]]:
        """See :meth:`TraceBuffer.add`: (late spans, traces completed early to make room)."""
        return self.buffer.add(records, force_oldest)

    def laps_of(self, trace: PendingTrace) -> list[FoundLap]:
        found = split_laps(trace.records, self.scope, self._decide, self._auto, self._max_spans)
        if trace.dropped:
            found = [FoundLap(f.root, f.spans, f.command, True) for f in found]
        return found

    def finish(self, trace: PendingTrace,
               context_of: Callable[[SpanRecord], Mapping[str, Any] | None] | None = None
               ) -> list[tuple[FoundLap, Lap]]:
        """Derive every lap of a decided trace and run the sinks; (lap found, derived lap) pairs.

        ``context_of(root)`` stands in for the lap's start context (baggage) where the source has one.
        """
        out = []
        engine = self.engine
        for f in self.laps_of(trace):
            context = context_of(f.root) if context_of is not None else None
            lap = engine.derive(f.root, f.spans, f.command, f.truncated, context)
            if lap is None:
                continue
            engine.deliver(lap)
            engine.publish(lap)
            out.append((f, lap))
        return out
