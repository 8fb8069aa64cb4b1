"""The in-process source: a ``SpanProcessor`` in front of the exporting processors.

A thin adapter: SDK spans become records (:mod:`._sdk`), the live :class:`Assembler` says when a lap is
complete, the :class:`Engine` derives it and runs the sinks, and the exporting processors (usually a
``BatchSpanProcessor``) get every span, lap roots as an annotated copy. Derivation happens here, before
the batch queue, so a full export queue can drop spans but never a lap. Nothing raises into the
application.
"""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable, Sequence
from typing import Any, cast

from opentelemetry import baggage
from opentelemetry.context import Context
from opentelemetry.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor

from .._api import any_ending_handle, ending_handle
from .._config import ChronographConfig, load_config
from .._lap import Lap
from .._pipeline import log_once
from .._worker import Deadline, Worker
from ..engine._assembly import Assembler, Completed
from ..engine._derive import lap_attributes
from ..engine._engine import Engine
from ..engine._records import EMPTY, SpanRecord
from ..engine._rules import compile_lap_rules
from ._sdk import _CTX, annotated_copy, records_of, resource_attributes, start_fields

__all__ = ["ChronographProcessor"]

LapCallback = Callable[[Lap], None]

_SINK_SHUTDOWN_S = 10.0  # one deadline for every sink at shutdown; exporters are shut down before it


def _recorded(c: Completed[ReadableSpan]) -> Completed[SpanRecord]:
    """A completed lap of SDK spans, as records (made outside the assembler's lock). In place: the
    assembler let go of the lap, so its list and its Completed are this caller's alone."""
    spans = c.spans
    spans.append(c.root)
    records = records_of(spans)
    done = cast("Completed[SpanRecord]", c)
    done.root = records.pop()
    done.spans = records
    return done


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
        health: bool | None = None,
    ) -> None:
        self.config = config if config is not None else load_config()
        cfg = self.config
        self._next: list[SpanProcessor] = list(span_processors)
        self._enabled = cfg.enabled
        self._grace = cfg.laps.grace_ms > 0
        self.engine = Engine(cfg, sinks, deferred_sinks)
        self._assembler = Assembler(
            compile_lap_rules(cfg.laps.match), cfg.laps.auto_server_roots,
            cfg.laps.max_pending_traces, cfg.laps.max_spans_per_trace, cfg.laps.grace_ms,
            on_evict=self._evicted,
        )
        ident = cfg.laps.identity
        self._baggage = any(s.baggage is not None for rules in (
            ident.customer, ident.tier, ident.command, ident.score, ident.session) for s in rules)
        self._rules_read_resource = any(rule.resource is not None for rule in cfg.laps.match)
        self._meter_provider = meter_provider
        if metrics_enabled and cfg.enabled:
            # The same stage install() builds (otel_chronograph._setup), for direct construction.
            from .._metrics import LapMetrics

            metrics = LapMetrics(meter_provider)
            (self.engine.deferred.sinks if metrics.deferred else self.engine.sinks).insert(0, metrics)
        if (metrics_enabled if health is None else health) and cfg.enabled:
            self._register_health(meter_provider)
        self._shutdown = False
        self._sweeper = Worker("chronograph-grace", self._sweep, 1.0)
        # Deliver queued laps to the metrics before the MeterProvider's own exit-time shutdown (atexit
        # runs handlers last-registered first, and the providers were made before this processor).
        atexit.register(_flush_at_exit, weakref.ref(self))

    # -- wiring ---------------------------------------------------------------------------------

    @property
    def sinks(self) -> list[LapCallback]:
        return self.engine.sinks

    @property
    def deferred(self) -> Any:
        return self.engine.deferred

    def add_span_processor(self, processor: SpanProcessor) -> None:
        self._next.append(processor)

    def add_sink(self, sink: LapCallback, deferred: bool = True) -> None:
        """Add a lap sink: deferred ones run in the background, others on the lap's path."""
        self.engine.add_sink(sink, deferred)

    def pending_laps(self) -> int:
        return self._assembler.pending_count()

    @property
    def laps_derived(self) -> int:
        return self.engine.laps_derived

    @property
    def failures(self) -> list[int]:
        return self.engine.failures

    @property
    def stats(self) -> dict[str, int]:
        s = self._assembler.stats
        return {
            "laps_derived": self.engine.laps_derived, "pending": self._assembler.pending_count(),
            "evicted": s.evicted, "dropped_spans": s.dropped_spans, "late_spans": s.late_spans,
            "forced": s.forced, "sink_queue_dropped": self.engine.dropped_count(),
            "failures": self.engine.failure_count(),
        }

    def _register_health(self, mp: MeterProvider | None) -> None:
        # Units are annotations ({lap}): a plain "1" would make Prometheus names end in _ratio.
        from .._metrics import observe_gauge

        observe_gauge(mp, "chronograph.pending_traces", self.pending_laps,
                      "Laps waiting for their spans to end", unit="{lap}")
        s = self._assembler.stats
        self.engine.register_health(mp, {
            "chronograph.evicted_traces": (lambda: s.evicted, "Pending laps evicted at the limit", "{lap}"),
            "chronograph.dropped_spans": (lambda: s.dropped_spans, "Spans not kept: per-lap span limit",
                                          "{span}"),
            "chronograph.late_spans": (lambda: s.late_spans, "Spans still open when their lap completed",
                                       "{span}"),
        })

    def _evicted(self, root_id: int) -> None:
        log_once("evict", "chronograph: more than %d laps pending; evicting the oldest unfinished "
                 "ones (counted in chronograph.evicted_traces)", self.config.laps.max_pending_traces)

    # -- SpanProcessor ----------------------------------------------------------------------------

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        if self._enabled:
            try:
                # The common start, read inline: an SDK span under a local parent (no call but the
                # assembler's); roots, remote parents and other span types take _start.
                sdk: Any = span
                try:
                    parent, ctx, attrs = sdk._parent, sdk._context, sdk._attributes._dict
                except AttributeError:  # not the SDK's span layout: _start reads the public API
                    parent = ctx = attrs = None
                if not (parent.__class__ is _CTX and ctx.__class__ is _CTX and not parent[2]
                        and self._assembler.start_child(ctx[1], parent[1], attrs)):
                    self._start(span, parent_context)
            except Exception:
                self.engine.failures[0] += 1
                log_once("on_start", "chronograph failed to track a span; it is exported unchanged")
        for p in self._next:
            p.on_start(span, parent_context)  # positional: a keyword costs more on every span

    def _start(self, span: Span, parent_context: Context | None) -> None:
        sid, parent_id, remote, attrs = start_fields(span)
        if sid is not None and (parent_id is None or remote or not self._assembler.start_child(
                sid, parent_id, attrs)):
            self._assembler.start(
                sid, parent_id, remote, span.name, span.kind, attrs,
                resource_attributes(span.resource) if self._rules_read_resource else EMPTY,
                (lambda: baggage.get_all(parent_context)) if self._baggage else None)

    def on_end(self, span: ReadableSpan) -> None:
        held = False
        completed: Sequence[Completed[ReadableSpan]] = ()
        if self._enabled:
            try:
                # The assembler keeps the SDK span itself: records are made when the lap completes.
                try:
                    ctx: Any = span._context
                except AttributeError:
                    ctx = span.context
                sid = ctx[1] if ctx.__class__ is _CTX else ctx.span_id if ctx is not None else 0
                if sid:  # 0: no span context, nothing to track
                    held, completed = self._assembler.end_item(sid, span)
                    if self._grace:
                        completed = self._expire(completed)
            except Exception:
                self.engine.failures[0] += 1
                log_once("on_end", "chronograph failed to assemble a span; it is exported unchanged")
                held, completed = False, ()
        if not held:
            for p in self._next:
                p.on_end(span)
        if completed:
            self._finish_ended(self._records(completed))

    def _records(self, completed: Sequence[Completed[ReadableSpan]]) -> list[Completed[SpanRecord]]:
        """The completed laps as records. Their roots were held: a lap whose spans cannot be read is
        counted and its root exported unannotated, never lost and never raised into the application."""
        out: list[Completed[SpanRecord]] = []
        for c in completed:
            try:
                out.append(_recorded(c))
            except Exception:
                self.engine.failures[0] += 1
                log_once("records", "chronograph failed to read a lap's spans; its root is exported "
                         "unannotated")
                self._forward(c.root)
        return out

    def _finish_ended(self, completed: Sequence[Completed[SpanRecord]]) -> None:
        """Every completed lap goes through here: the laps an ended span completed, those whose grace
        period passed (sweeper) and those completed at shutdown (a subclass may add to them first:
        ``chronograph exec`` joins its children's spans)."""
        for c in completed:
            self._finish(c)

    def _expire(self, completed: Sequence[Completed[ReadableSpan]]) -> Sequence[Completed[ReadableSpan]]:
        """``completed`` plus the laps whose grace period has passed."""
        asm = self._assembler
        expired = asm.expire()
        if asm.has_waiting():
            self._sweeper.wake()
        return [*completed, *expired] if expired else completed

    def _forward(self, span: ReadableSpan) -> None:
        for p in self._next:
            p.on_end(span)

    def _finish(self, c: Completed[SpanRecord]) -> None:
        # Each step is a call or two on every lap's path: the root's annotation, the forwarding loop
        # and (without sinks on the lap's path) Engine.deliver are inlined here.
        record = c.root
        root: ReadableSpan = record.source
        engine = self.engine
        lap = engine.derive(record, c.spans, c.command, c.truncated, c.context)
        if lap is None:
            self._forward(root)
            return
        out = root
        try:
            try:
                out = annotated_copy(root, lap_attributes(lap))
            except Exception:
                engine.failures[0] += 1
                log_once("annotate", "chronograph failed to annotate a lap span")
            handle = any_ending_handle()
            if handle is not None:
                handle = ending_handle(record.span_id)
            if engine.sinks:
                engine.deliver(lap)
            if handle is not None:
                handle.telemetry = lap
        finally:
            # Even when a sink raised SystemExit/KeyboardInterrupt: the lap span is never lost.
            for p in self._next:
                p.on_end(out)
        engine.publish(lap)

    # -- grace periods --------------------------------------------------------------------------

    def _sweep(self) -> float | None:
        asm = self._assembler
        self._finish_ended(self._records(asm.expire()))
        nxt = asm.next_deadline_ns()
        if nxt is None:
            return None
        import time

        return max((nxt - time.monotonic_ns()) / 1e9, 0.001)

    # -- lifecycle ------------------------------------------------------------------------------

    def flush_deferred(self, timeout_s: float) -> None:
        if not self._shutdown:
            self.engine.deferred.flush(Deadline(timeout_s))

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush exporters, then sinks, all within one overall deadline of ``timeout_millis``."""
        deadline = Deadline(timeout_millis / 1000)
        ok = True
        for p in self._next:
            left = deadline.left()
            ok = p.force_flush(int((left or 0) * 1000)) and ok
        return self.engine.flush(deadline) and ok

    def shutdown(self) -> None:
        """Complete pending laps, shut the exporters down (before any sink can delay them), then the
        sinks within one deadline. Laps ending afterwards are still exported, and counted as dropped
        for the sinks."""
        if self._shutdown:
            return
        self._finish_ended(self._records(self._assembler.expire(everything=True)))
        self._shutdown = True
        self._sweeper.stop(1.0)
        for p in self._next:
            try:
                p.shutdown()
            except Exception:
                self.engine.failures[0] += 1
                log_once("shutdown-next", "chronograph: an exporting processor failed to shut down")
        self.engine.shutdown(Deadline(_SINK_SHUTDOWN_S))


def _flush_at_exit(ref: weakref.ref[ChronographProcessor]) -> None:
    processor = ref()
    if processor is not None:
        processor.flush_deferred(5.0)
