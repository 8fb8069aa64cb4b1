"""The gateway: OTLP receivers -> per-trace buffer (``decision_wait`` after a trace's last span) ->
the engine (laps for whole traces, the sinks) -> exporters, with every span forwarded and lap roots
replaced by annotated copies.

Threads: receivers call :meth:`Gateway.accept` (gRPC worker threads, the HTTP server's thread); one
worker decides traces when they are due and hands the requests to the exporters' queues; each exporter
sends from its own threads. Memory is bounded by ``laps.max_pending_traces`` (then the receivers refuse),
``laps.max_spans_per_trace`` (spans over it are forwarded at once, counted, and the lap marked
truncated) and the exporters' ``sending_queue.queue_size`` (then the receivers refuse too).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from .._pipeline import log_once
from .._setup import build_sinks
from .._worker import Deadline, Worker
from ..engine import Engine, PendingTrace, TraceLaps
from ..engine._records import SpanRecord
from ..sources import OTLPError
from ._config import GatewayConfig, RetryOnFailure, SendingQueue
from ._exporters import ExportQueue, make_sender
from ._receiver import GrpcReceiver, HttpReceiver, Refused
from ._records import GatewayRecord, LeanDecoder
from ._telemetry import Telemetry, make_telemetry
from ._wire import annotate_root, batches

__all__ = ["Gateway"]

_log = logging.getLogger("otel_chronograph.gateway")

# Exporters without the Collector's queue/retry keys (debug, file, nop): a plain queue, no retry.
_DEFAULT_QUEUE = SendingQueue()
_NO_RETRY = RetryOnFailure(enabled=False)
_IDLE_S = 0.1  # how often the decision worker looks when nothing is pending (bounds the lap delay)


def _root_attributes(root: SpanRecord) -> Mapping[str, Any]:
    """The lap's "baggage" in the gateway: the root's attributes (the upstream BaggageSpanProcessor
    copies baggage entries into span attributes; OTLP itself carries no baggage)."""
    return root.attributes


class Gateway:
    """One gateway process's pipeline. ``start()`` listens, ``stop()`` drains; ``accept()`` is what
    the receivers call (and tests may call directly)."""

    def __init__(self, config: GatewayConfig, token: str | None = None,
                 telemetry: Telemetry | None = None) -> None:
        self.config = config
        self.token = token
        self.telemetry = telemetry if telemetry is not None else make_telemetry(config)
        mp = self.telemetry.meter_provider
        cfg = config.chronograph
        sync, deferred = build_sinks(cfg, mp)
        self.engine = Engine(cfg, sync, deferred)
        self.laps = TraceLaps(self.engine)
        self.buffer = self.laps.buffer
        self.decoder = LeanDecoder(cfg)
        self.queues = [ExportQueue(cid, make_sender(etype, ecfg), getattr(ecfg, "sending_queue", None)
                                   or _DEFAULT_QUEUE, getattr(ecfg, "retry_on_failure", None) or _NO_RETRY)
                       for cid, (etype, ecfg) in config.exporters.items()]
        self._idle_s = min(cfg.laps.decision_wait, _IDLE_S) or 0.01
        self._wait_ns = int(cfg.laps.decision_wait * 1e9)
        # How late the worker decides traces (s past their decision_wait); past max_lag_s the gateway
        # takes no new traces: CPU-bound, it says so instead of letting the lap delay and memory grow.
        self.lag_s = 0.0
        self.max_lag_s = max(1.0, cfg.laps.decision_wait)
        self._worker = Worker("chronograph-gateway-decide", self._decide, self._idle_s)
        self._lock = threading.Lock()
        self._accepting = True
        self._receivers: list[GrpcReceiver | HttpReceiver] = []
        self.received_spans = 0
        self.decode_errors = 0
        self.rejected: dict[str, int] = {"pending": 0, "queue": 0, "closing": 0}
        self.forwarded_at_once = 0  # late spans and spans over the per-trace limit
        self.pending_at_shutdown = 0
        self.annotate_failures = 0
        self.forward_failures = 0  # spans of decided traces that could not be handed to the exporters
        self._delay = self._register_metrics(mp)

    # -- metrics --------------------------------------------------------------------------------

    def _register_metrics(self, mp: Any) -> Any:
        from .._metrics import _meter, observe_counter, observe_gauge

        stats = self.buffer.stats
        observe_gauge(mp, "chronograph.pending_traces", lambda: len(self.buffer),
                      "Traces waiting for decision_wait after their last span", unit="{trace}")
        self.engine.register_health(mp, {
            "chronograph.late_spans": (lambda: stats.late_spans, "Spans that arrived after their trace "
                                       "was decided (forwarded unchanged)", "{span}"),
            "chronograph.duplicate_spans": (lambda: stats.duplicate_spans, "Spans delivered again while "
                                            "their trace was pending (a retried request): kept once",
                                            "{span}"),
            "chronograph.dropped_spans": (lambda: stats.dropped_spans, "Spans over max_spans_per_trace "
                                          "(forwarded, not in the lap)", "{span}"),
            "chronograph.gateway.spans.received": (lambda: self.received_spans, "Spans accepted",
                                                   "{span}"),
            "chronograph.gateway.decode_errors": (lambda: self.decode_errors, "Requests refused as "
                                                  "malformed (INVALID_ARGUMENT / 400)", "{request}"),
        })
        observe_counter(mp, "chronograph.gateway.rejected_spans",
                        lambda: [(n, {"reason": reason}) for reason, n in self.rejected.items()],
                        "Spans refused with backpressure (RESOURCE_EXHAUSTED / 429 / 503): the sender "
                        "retries them", unit="{span}")
        for name, attr, description in (
                ("chronograph.gateway.export.sent_spans", "sent_spans", "Spans the exporter delivered"),
                ("chronograph.gateway.export.failed_spans", "failed_spans",
                 "Spans given up after retries or refused permanently"),
                ("chronograph.gateway.export.rejected_spans", "rejected_spans",
                 "Spans the next hop reported rejected (partial success)")):
            observe_counter(mp, name, lambda attr=attr: [(getattr(q, attr), {"exporter": q.name})  # type: ignore[misc]
                                                         for q in self.queues], description, unit="{span}")
        _meter(mp).create_observable_gauge(
            "chronograph.gateway.export.queue_size",
            [lambda _: [_observation(q.size(), {"exporter": q.name}) for q in self.queues]],
            unit="{request}", description="Requests waiting in each exporter's sending queue")
        wait_ms = self.config.chronograph.laps.decision_wait * 1000
        return _meter(mp).create_histogram(
            "chronograph.gateway.lap_delay", unit="ms",
            description="From a trace's last span arriving to its spans handed to the exporters",
            explicit_bucket_boundaries_advisory=[wait_ms + d for d in
                                                 (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)])

    # -- receiving ------------------------------------------------------------------------------

    def accept(self, request: Any) -> int:
        """Take an ``ExportTraceServiceRequest``'s spans; the number accepted. Raises OTLPError
        (malformed: nothing taken) or :class:`Refused` (try again later: nothing taken)."""
        if not self._accepting:
            self.rejected["closing"] += _span_count(request)
            raise Refused("the gateway is shutting down", 1.0, "closing")
        try:
            records = self.decoder.records(request.resource_spans)
        except OTLPError:
            self.malformed()
            raise
        if not records:
            return 0
        self._check_room(records)
        overflow: list[SpanRecord] = []
        was_empty = not len(self.buffer)
        late, _ = self.buffer.add(records, overflow=overflow)
        with self._lock:
            self.received_spans += len(records)
        if late or overflow:
            self._send([*late, *overflow])  # type: ignore[list-item]
            with self._lock:
                self.forwarded_at_once += len(late) + len(overflow)
        if was_empty:
            self._worker.wake()
        return len(records)

    def malformed(self) -> None:
        """Count a request refused as malformed (by a receiver, or here)."""
        with self._lock:
            self.decode_errors += 1

    def _check_room(self, records: list[GatewayRecord]) -> None:
        full = next((q for q in self.queues if q.full()), None)
        if full is not None:
            with self._lock:
                self.rejected["queue"] += len(records)
            raise Refused(f"exporter {full.name}'s sending queue is full; retry later", 1.0, "queue")
        buffer = self.buffer
        if not len(buffer):
            return
        new = buffer.new_traces({r.trace_id for r in records})
        if not new:
            return  # more spans of pending traces: always taken
        if buffer.full(new):
            reason = f"{len(buffer)} traces pending (laps.max_pending_traces)"
        elif self.lag_s > self.max_lag_s:
            reason = f"the gateway decides traces {self.lag_s:.1f}s late (CPU-bound)"
        else:
            return
        with self._lock:
            self.rejected["pending"] += len(records)
        buffer.stats.refused += 1
        raise Refused(f"{reason}; retry later", (buffer.next_due_s() or 0.0) + 0.5, "pending")

    # -- deciding and forwarding ----------------------------------------------------------------

    def _decide(self) -> float | None:
        due = self.buffer.due()
        if due:
            oldest = min(t.last_ns for t in due)
            self.lag_s = max((time.monotonic_ns() - oldest - self._wait_ns) / 1e9, 0.0)
            self._forward_safely(due)
        elif not len(self.buffer):
            self.lag_s = 0.0
        wait = self.buffer.next_due_s()
        return self._idle_s if wait is None else wait + 0.001

    def _forward_safely(self, traces: list[PendingTrace]) -> None:
        try:
            self._forward(traces)
        except Exception:  # a bug must not silently lose the traces the buffer handed out
            self.forward_failures += sum(len(t.records) for t in traces)
            self.engine.failures[0] += 1
            log_once("forward", "chronograph gateway: failed to forward decided traces (counted in "
                     "chronograph.failures)")

    def _forward(self, traces: list[PendingTrace]) -> None:
        replaced: dict[int, bytes] = {}
        for trace in traces:
            for found, lap in self.laps.finish(trace, _root_attributes):
                try:
                    replaced[id(found.root)] = annotate_root(found.root, lap)  # type: ignore[arg-type]
                except Exception:
                    self.annotate_failures += 1
                    self.engine.failures[0] += 1
                    log_once("annotate", "chronograph gateway: failed to annotate a lap root; it is "
                             "forwarded unchanged")
        self._send((r for t in traces for r in t.records), replaced)  # type: ignore[misc]
        now = time.monotonic_ns()
        record = self._delay.record
        for trace in traces:
            record((now - trace.last_ns) / 1e6)

    def _send(self, records: Iterable[GatewayRecord], replaced: Mapping[int, bytes] | None = None) -> None:
        for batch in batches(records, replaced):
            for q in self.queues:
                q.put(batch)

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Listen on every configured endpoint (RuntimeError naming the one that failed)."""
        try:
            for grpc_protocol in self.config.grpc_endpoints():
                receiver: GrpcReceiver | HttpReceiver = GrpcReceiver(
                    self.accept, self.malformed, grpc_protocol, self.token)
                receiver.start()
                self._receivers.append(receiver)
            for http_protocol in self.config.http_endpoints():
                receiver = HttpReceiver(self.accept, self.malformed, http_protocol, self.token)
                receiver.start()
                self._receivers.append(receiver)
        except BaseException:
            self.stop(Deadline(5.0))
            raise
        self._worker.start()

    @property
    def receivers(self) -> list[GrpcReceiver | HttpReceiver]:
        return list(self._receivers)

    def stop(self, deadline: Deadline) -> bool:
        """Stop receiving, derive everything pending, flush the exporters and the sinks."""
        self._accepting = False
        for r in self._receivers:
            r.stop(min(deadline.left() or 5.0, 5.0))
        self._worker.stop(deadline.left())
        pending = self.buffer.due(everything=True)
        self.pending_at_shutdown = len(pending)
        for q in self.queues:
            q.begin_shutdown(deadline)
        if pending:
            self._forward_safely(pending)
        ok = all([q.shutdown(deadline) for q in self.queues])
        ok = self.engine.shutdown(deadline) and ok
        self.telemetry.shutdown(deadline.left() or 1.0)
        return ok

    def summary(self) -> str:
        failed = sum(q.failed_spans for q in self.queues)
        sent = {q.name: q.sent_spans for q in self.queues}
        return (f"{self.received_spans} spans received, {self.engine.laps_derived} laps, "
                f"{self.buffer.stats.late_spans} late spans, "
                f"{self.buffer.stats.duplicate_spans} duplicate spans, "
                f"{sum(self.rejected.values())} spans refused (backpressure), "
                f"{self.decode_errors} malformed requests, sent {sent}, "
                f"{failed} spans failed to export")


def _observation(value: float, attributes: dict[str, str]) -> Any:
    from opentelemetry.metrics import Observation

    return Observation(value, attributes)


def _span_count(request: Any) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
