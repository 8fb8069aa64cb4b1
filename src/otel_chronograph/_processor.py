"""The chronograph span processor: assembly, derivation and annotation in front of the exporters.

It wraps the exporting processors (usually a ``BatchSpanProcessor``): every span reaches them, lap roots
as an annotated copy once the lap is derived. Derivation happens here, before the batch queue, so a
full export queue can drop spans but never a lap. Nothing in here raises into the application.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from . import _api
from ._assembly import Assembler, Completed
from ._config import ChronographConfig, load_config
from ._derive import Deriver, lap_attributes
from ._lap import Lap
from ._metrics import LapMetrics, observe_counter, observe_gauge
from ._pipeline import DeferredSinks, call_safely, flush_sinks, log_once, shutdown_sinks
from ._rules import attributes_of, compile_lap_rules

__all__ = ["ChronographProcessor"]

LapCallback = Callable[[Lap], None]


def annotated_copy(root: ReadableSpan, lap: Lap) -> ReadableSpan:
    """A frozen span can't take attributes, so exporters get a copy of the root with ``chronograph.*``."""
    attrs = dict(attributes_of(root))
    attrs.update(lap_attributes(lap))
    return ReadableSpan(
        name=root.name, context=root.context, parent=root.parent, resource=root.resource,
        attributes=attrs, events=root.events, links=root.links, kind=root.kind, status=root.status,
        start_time=root.start_time, end_time=root.end_time,
        instrumentation_scope=root.instrumentation_scope,
    )


class ChronographProcessor(SpanProcessor):
    """Derives a :class:`Lap` for every finished lap and hands it to the sinks.

    ``sinks`` run in the thread that ended the lap, before ``lap.telemetry`` is available (use for
    what must not be lost, e.g. the billing outbox); ``deferred_sinks`` run in a background thread in
    batches (metrics, the flight recorder).
    """

    def __init__(
        self,
        config: ChronographConfig | None = None,
        span_processors: Sequence[SpanProcessor] = (),
        meter_provider: MeterProvider | None = None,
        sinks: Sequence[LapCallback] = (),
        deferred_sinks: Sequence[LapCallback] = (),
        metrics_enabled: bool = True,
    ) -> None:
        self.config = config if config is not None else load_config()
        cfg = self.config
        self._next: list[SpanProcessor] = list(span_processors)
        self._enabled = cfg.enabled
        self._grace = cfg.laps.grace_ms > 0
        self._deriver = Deriver(cfg)
        self._assembler = Assembler(
            compile_lap_rules(cfg.laps.match), cfg.laps.auto_server_roots,
            cfg.laps.max_pending_traces, cfg.laps.max_spans_per_trace, cfg.laps.grace_ms,
            on_evict=self._evicted,
        )
        self.sinks: list[LapCallback] = list(sinks)
        deferred = list(deferred_sinks)
        self._meter_provider = meter_provider
        if metrics_enabled and cfg.enabled:
            deferred.insert(0, LapMetrics(meter_provider))
            self._register_health(meter_provider)
        self.deferred = DeferredSinks(deferred)
        self.failures = [0]
        self.laps_derived = 0
        self._count_lock = threading.Lock()
        self._shutdown = False
        self._sweeper: threading.Thread | None = None
        self._sweep_wake = threading.Event()

    # -- wiring ---------------------------------------------------------------------------------

    def add_span_processor(self, processor: SpanProcessor) -> None:
        self._next.append(processor)

    def add_sink(self, sink: LapCallback, deferred: bool = True) -> None:
        """Add a lap sink: deferred ones run in the background, others on the lap's path."""
        if deferred:
            self.deferred.sinks.append(sink)
        else:
            self.sinks.append(sink)

    def pending_laps(self) -> int:
        return self._assembler.pending_count()

    @property
    def stats(self) -> dict[str, int]:
        s = self._assembler.stats
        return {
            "laps_derived": self.laps_derived, "pending": self._assembler.pending_count(),
            "evicted": s.evicted, "dropped_spans": s.dropped_spans, "late_spans": s.late_spans,
            "forced": s.forced, "sink_queue_dropped": self.deferred.dropped,
            "failures": self.failures[0] + self.deferred.failures[0],
        }

    def _register_health(self, mp: MeterProvider | None) -> None:
        # Units are annotations ({lap}): a plain "1" would make Prometheus names end in _ratio.
        observe_gauge(mp, "chronograph.pending_traces", self.pending_laps,
                      "Laps waiting for their spans to end", unit="{lap}")
        s = self._assembler.stats

        def one(name: str, read: Callable[[], int], desc: str, unit: str = "{lap}") -> None:
            observe_counter(mp, name, lambda: [(read(), {})], desc, unit=unit)

        one("chronograph.evicted_traces", lambda: s.evicted, "Pending laps evicted at the limit")
        one("chronograph.dropped_spans", lambda: s.dropped_spans, "Spans not kept: per-lap span limit",
            "{span}")
        one("chronograph.late_spans", lambda: s.late_spans, "Spans still open when their lap completed",
            "{span}")
        one("chronograph.laps", lambda: self.laps_derived, "Laps derived")
        one("chronograph.failures", lambda: self.failures[0] + self.deferred.failures[0],
            "Internal failures (derivation or sinks), never raised into the application", "{failure}")
        one("chronograph.sink_dropped", lambda: self.deferred.dropped,
            "Laps not handed to deferred sinks: queue full")

    def _evicted(self, root_id: int) -> None:
        log_once("evict", "chronograph: more than %d laps pending; evicting the oldest unfinished "
                 "ones (counted in chronograph.evicted_traces)", self.config.laps.max_pending_traces)

    # -- SpanProcessor ----------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self._enabled:
            try:
                self._assembler.start(span)
            except Exception:
                self.failures[0] += 1
                log_once("on_start", "chronograph failed to track a span; it is exported unchanged")
        for p in self._next:
            p.on_start(span, parent_context=parent_context)

    def on_end(self, span: ReadableSpan) -> None:
        if not self._enabled:
            self._forward(span)
            return
        try:
            held, completed = self._end(span)
        except Exception:
            self.failures[0] += 1
            log_once("on_end", "chronograph failed to assemble a span; it is exported unchanged")
            held, completed = False, []
        if not held:
            self._forward(span)
        for c in completed:
            self._finish(c)

    def _end(self, span: ReadableSpan) -> tuple[bool, list[Completed]]:
        asm = self._assembler
        held, completed = asm.end(span)
        if self._grace:
            completed.extend(asm.expire())
            if asm.has_waiting():
                self._ensure_sweeper()
        return held, completed

    def _forward(self, span: ReadableSpan) -> None:
        for p in self._next:
            p.on_end(span)

    def _finish(self, c: Completed) -> None:
        try:
            lap = self._deriver.derive(c.root, c.spans, c.command, c.truncated)
        except Exception:
            self.failures[0] += 1
            log_once("derive", "chronograph failed to derive a lap; its root is exported unannotated")
            self._forward(c.root)
            return
        with self._count_lock:
            self.laps_derived += 1
        handle = _api.waiting_handle(c.root.context.span_id) if c.root.context else None
        call_safely(self.sinks, lap, self.failures)
        if handle is not None:
            handle.telemetry = lap
        try:
            out = annotated_copy(c.root, lap)
        except Exception:
            self.failures[0] += 1
            log_once("annotate", "chronograph failed to annotate a lap span")
            out = c.root
        self._forward(out)
        self.deferred.put(lap)

    # -- grace periods --------------------------------------------------------------------------

    def _ensure_sweeper(self) -> None:
        if self._sweeper is None:
            self._sweeper = threading.Thread(target=self._sweep, name="chronograph-grace", daemon=True)
            self._sweeper.start()
        else:
            self._sweep_wake.set()

    def _sweep(self) -> None:
        import time

        asm = self._assembler
        while not self._shutdown:
            nxt = asm.next_deadline_ns()
            timeout = 1.0 if nxt is None else max((nxt - time.monotonic_ns()) / 1e9, 0.001)
            self._sweep_wake.wait(timeout)
            self._sweep_wake.clear()
            for c in asm.expire():
                self._finish(c)

    # -- lifecycle ------------------------------------------------------------------------------

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        ok = self.deferred.flush(timeout_millis / 1000)
        # The sinks on the lap's path too, e.g. the billing outbox: deliver what is pending now.
        ok = flush_sinks(self.sinks, timeout_millis / 1000, self.failures) and ok
        for p in self._next:
            ok = p.force_flush(timeout_millis) and ok
        return ok

    def shutdown(self) -> None:
        if self._shutdown:
            return
        for c in self._assembler.expire(everything=True):
            self._finish(c)
        self._shutdown = True
        self._sweep_wake.set()
        self.deferred.shutdown()
        shutdown_sinks(self.sinks, self.failures)
        for p in self._next:
            p.shutdown()
