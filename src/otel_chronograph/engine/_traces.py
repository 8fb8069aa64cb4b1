"""Time-based completion for sources that only see ended spans (the gateway, files).

A root arriving first says nothing about spans still on their way from other services, so a trace is
decided ``decision_wait`` after its *last* span arrived, as the Collector's tail-sampling processor does.
Memory is bounded like there: at most ``max_traces`` traces pending and ``max_spans`` spans kept per
trace; a full buffer refuses new traces (the caller answers RESOURCE_EXHAUSTED / 429) or, offline,
completes its oldest trace early (counted). Spans of a trace already decided are late: returned to be
forwarded unchanged, and counted. A span delivered twice while its trace is pending (OTLP is at-least-once:
a sender retries a request whose answer it did not get, the Collector's queue re-sends after a timeout) is
kept once and counted, so a retried root never yields a second lap.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ._counters import CompletionStats
from ._records import SpanRecord

__all__ = ["PendingTrace", "TraceBuffer"]


@dataclass(eq=False, slots=True)
class PendingTrace:
    trace_id: int
    records: list[SpanRecord] = field(default_factory=list)
    span_ids: set[int] = field(default_factory=set)
    last_ns: int = 0
    dropped: int = 0


class TraceBuffer:
    """Thread-safe pending traces, ordered by last arrival; ``due()`` hands out decided ones."""

    def __init__(self, decision_wait_s: float, max_traces: int, max_spans: int,
                 clock: Callable[[], int] = time.monotonic_ns) -> None:
        self._wait_ns = int(decision_wait_s * 1e9)
        self._max_traces = max_traces
        self._max_spans = max_spans
        self._clock = clock
        self._pending: OrderedDict[int, PendingTrace] = OrderedDict()
        self._decided: OrderedDict[int, None] = OrderedDict()
        self._lock = threading.Lock()
        self.stats = CompletionStats()

    def __len__(self) -> int:
        return len(self._pending)

    def full(self, new_traces: int = 1) -> bool:
        """Would ``new_traces`` more traces exceed the bound? (ask before accepting a request)"""
        return len(self._pending) + new_traces > self._max_traces

    def new_traces(self, trace_ids: Iterable[int]) -> int:
        """How many of these (distinct) trace ids are not pending yet: what a request would add."""
        pending = self._pending
        return sum(1 for tid in trace_ids if tid not in pending)

    def add(self, records: Iterable[SpanRecord], force_oldest: bool = False,
            overflow: list[SpanRecord] | None = None) -> tuple[list[SpanRecord], list[PendingTrace]]:
        """Take spans in: (late spans to forward unchanged, traces completed early to make room).

        Without ``force_oldest`` the caller must have checked :meth:`full`; the buffer then grows past
        its bound by at most one request's traces rather than lose a span. Spans over the per-trace
        limit are counted and, when ``overflow`` is given, appended to it (a forwarder still sends them).
        """
        late: list[SpanRecord] = []
        forced: list[PendingTrace] = []
        now = self._clock()
        with self._lock:
            pending, decided, stats = self._pending, self._decided, self.stats
            for r in records:
                stats.spans += 1
                tid = r.trace_id
                trace = pending.get(tid)
                if trace is None:
                    if tid in decided:
                        stats.late_spans += 1
                        late.append(r)
                        continue
                    trace = pending[tid] = PendingTrace(tid)
                    if force_oldest and len(pending) > self._max_traces:
                        _, oldest = pending.popitem(last=False)
                        self._mark_decided(oldest.trace_id)
                        stats.forced += 1
                        forced.append(oldest)
                else:
                    pending.move_to_end(tid)
                trace.last_ns = now
                if r.span_id in trace.span_ids:
                    stats.duplicate_spans += 1
                elif len(trace.records) < self._max_spans:
                    trace.span_ids.add(r.span_id)
                    trace.records.append(r)
                else:
                    trace.dropped += 1
                    stats.dropped_spans += 1
                    if overflow is not None:
                        overflow.append(r)
        return late, forced

    def due(self, everything: bool = False) -> list[PendingTrace]:
        """Traces whose last span arrived ``decision_wait`` ago (all of them with ``everything``)."""
        out: list[PendingTrace] = []
        if not self._pending:
            return out
        limit = self._clock() - self._wait_ns
        with self._lock:
            pending = self._pending
            while pending:
                tid, trace = next(iter(pending.items()))
                if not everything and trace.last_ns > limit:
                    break
                del pending[tid]
                self._mark_decided(tid)
                out.append(trace)
        return out

    def next_due_s(self) -> float | None:
        """Seconds until the oldest pending trace is due, None when nothing is pending."""
        with self._lock:
            if not self._pending:
                return None
            first = next(iter(self._pending.values()))
        return max((first.last_ns + self._wait_ns - self._clock()) / 1e9, 0.0)

    def _mark_decided(self, tid: int) -> None:
        self.stats.decided += 1
        decided = self._decided
        decided[tid] = None
        while len(decided) > self._max_traces:
            decided.popitem(last=False)
