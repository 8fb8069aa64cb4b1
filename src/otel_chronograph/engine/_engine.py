"""The engine every source feeds: derivation, then the sinks on the lap's path, then the deferred ones.

A source (the SDK processor, the gateway, ``chronograph derive``, ``chronograph exec``) decides when a
lap is complete, hands its records here, and forwards the annotated root its own way. Nothing in here
raises into the application: a failure is counted and logged once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.metrics import MeterProvider

from .._config import ChronographConfig
from .._lap import Lap
from .._pipeline import DeferredSinks, call_safely, flush_sinks, log_once, shutdown_sinks
from .._worker import Deadline
from ._derive import Deriver
from ._records import SpanRecord

__all__ = ["Engine", "LapCallback"]

LapCallback = Callable[[Lap], None]


class Engine:
    """Derives laps and runs the sinks. ``sinks`` run in the thread that completed the lap, before the
    root is forwarded (what must not be lost: the billing outbox); ``deferred_sinks`` run in a
    background worker in batches (metrics, the flight recorder)."""

    def __init__(self, config: ChronographConfig, sinks: Sequence[LapCallback] = (),
                 deferred_sinks: Sequence[LapCallback] = ()) -> None:
        self.config = config
        self.deriver = Deriver(config)
        self.sinks: list[LapCallback] = list(sinks)
        self.deferred = DeferredSinks(deferred_sinks)
        # Queue for the deferred sinks (counted, never blocking, when full or after shutdown): the
        # queue's own method, not a method calling it (a call less on every lap's path).
        self.publish: Callable[[Lap], None] = self.deferred.put
        self.failures = [0]
        self.laps_derived = 0
        self._count_lock = threading.Lock()
        self.closed = False

    def add_sink(self, sink: LapCallback, deferred: bool = True) -> None:
        (self.deferred.sinks if deferred else self.sinks).append(sink)

    def derive(self, root: SpanRecord, spans: Sequence[SpanRecord], command: str | None = None,
               truncated: bool = False, context: Mapping[str, Any] | None = None) -> Lap | None:
        """The lap, or None (counted, logged once) when derivation failed."""
        try:
            lap = self.deriver.derive(root, spans, command, truncated, context)
        except Exception:
            self.failures[0] += 1
            log_once("derive", "chronograph failed to derive a lap; its root is exported unannotated")
            return None
        lock = self._count_lock  # acquire/release: ``with`` makes two bound methods and calls __exit__
        lock.acquire()
        try:
            self.laps_derived += 1
        finally:
            lock.release()
        return lap

    def deliver(self, lap: Lap) -> None:
        """The sinks on the lap's path (may re-raise SystemExit/KeyboardInterrupt after all ran)."""
        if self.sinks:
            call_safely(self.sinks, lap, self.failures)

    def failure_count(self) -> int:
        return self.failures[0] + self.deferred.failures[0]

    def dropped_count(self) -> int:
        return self.deferred.dropped + self.deferred.after_shutdown

    def register_health(self, meter_provider: MeterProvider | None,
                        extra: Mapping[str, tuple[Callable[[], int], str, str]] = {}) -> None:
        """The engine's health counters (plus a source's own ``extra``: name -> (read, description,
        unit)) as observable counters: nothing is paid per lap."""
        from .._metrics import observe_counter

        counters: dict[str, tuple[Callable[[], int], str, str]] = {
            "chronograph.laps": (lambda: self.laps_derived, "Laps derived", "{lap}"),
            "chronograph.failures": (self.failure_count, "Internal failures (derivation or sinks), "
                                     "never raised into the application", "{failure}"),
            "chronograph.sink_dropped": (self.dropped_count, "Laps not handed to deferred sinks: queue "
                                         "full or ended after shutdown", "{lap}"),
            **extra,
        }
        for name, (read, description, unit) in counters.items():
            observe_counter(meter_provider, name, lambda read=read: [(read(), {})],  # type: ignore[misc]
                            description, unit=unit)

    def flush(self, deadline: Deadline) -> bool:
        ok = self.deferred.flush(deadline)
        # The sinks on the lap's path too, e.g. the billing outbox: deliver what is pending now.
        return flush_sinks(self.sinks, deadline, self.failures) and ok

    def shutdown(self, deadline: Deadline) -> bool:
        """Deliver what is queued and close every sink, within one deadline."""
        if self.closed:
            return True
        self.closed = True
        ok = self.deferred.shutdown(deadline)
        shutdown_sinks(self.sinks, self.failures)
        return ok
