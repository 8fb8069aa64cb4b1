"""Lap sinks and the deferred queue that runs the non-urgent ones off the application's path.

A sink is any callable taking a :class:`Lap` (structlog-style: small, composable). It may also have
``flush(timeout_s)`` and ``shutdown()``; the pipeline calls them when present.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from ._lap import Lap

__all__ = ["DeferredSinks", "LapSink", "call_safely", "flush_sinks", "shutdown_sinks"]

_log = logging.getLogger("otel_chronograph")


@runtime_checkable
class LapSink(Protocol):
    def __call__(self, lap: Lap) -> None: ...


class _Once:
    """Log a failure the first time for each key, then count silently (no log storms in a hot path)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def __call__(self, key: str, msg: str, *args: object) -> None:
        if key not in self._seen:
            self._seen.add(key)
            # Only attach a traceback when called while handling one (not for e.g. eviction notices).
            _log.warning(msg, *args, exc_info=sys.exc_info()[1] is not None)


log_once = _Once()


def _name(sink: object) -> str:
    return getattr(sink, "__name__", type(sink).__name__)


def call_safely(sinks: Sequence[Callable[[Lap], None]], lap: Lap, failures: list[int]) -> None:
    """Run every sink; one failing sink neither stops the others nor reaches the application."""
    for sink in sinks:
        try:
            sink(lap)
        except Exception:
            failures[0] += 1
            log_once(f"sink:{_name(sink)}", "chronograph sink %s failed; further failures are counted",
                     _name(sink))


def flush_sinks(sinks: Sequence[object], timeout_s: float, failures: list[int]) -> bool:
    """Call ``flush(timeout_s)`` on every sink that has one; False if any failed or said False."""
    deadline = time.monotonic() + timeout_s
    ok = True
    for sink in sinks:
        flush = getattr(sink, "flush", None)
        if callable(flush):
            try:
                ok = flush(max(deadline - time.monotonic(), 0.0)) is not False and ok
            except Exception:
                failures[0] += 1
                ok = False
                log_once(f"flush:{_name(sink)}", "chronograph sink %s failed to flush", _name(sink))
    return ok


def shutdown_sinks(sinks: Sequence[object], failures: list[int]) -> None:
    """Call ``shutdown()`` on every sink that has one; a failing one does not stop the others."""
    for sink in sinks:
        close = getattr(sink, "shutdown", None)
        if callable(close):
            try:
                close()
            except Exception:
                failures[0] += 1
                log_once(f"shutdown:{_name(sink)}", "chronograph sink %s failed to shut down", _name(sink))


class DeferredSinks:
    """A bounded queue drained in batches by one worker thread; overflow is counted, never blocking."""

    def __init__(self, sinks: Sequence[Callable[[Lap], None]], max_queue: int = 65_536,
                 batch: int = 256, interval_s: float = 0.2) -> None:
        self.sinks = list(sinks)
        self._q: deque[Lap] = deque()
        self._max = max_queue
        self._batch = batch
        self._interval = interval_s
        self._wake = threading.Event()
        self._idle = threading.Condition()
        self._busy = False
        self._stopped = False
        self.dropped = 0
        self.failures = [0]
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def _ensure_thread(self) -> None:
        # Under a lock, and published only once started: laps end in many threads (and the grace
        # sweeper), so two workers must not be made, nor shutdown() join a thread not yet started.
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="chronograph-sinks", daemon=True)
                thread.start()
                self._thread = thread

    def put(self, lap: Lap) -> None:
        if not self.sinks:
            return
        if self._thread is None:
            self._ensure_thread()
        if len(self._q) >= self._max:
            self.dropped += 1
            return
        self._q.append(lap)
        if len(self._q) == self._batch:
            self._wake.set()

    def depth(self) -> int:
        return len(self._q)

    def _drain(self) -> None:
        q = self._q
        sinks = self.sinks
        while q:
            with self._idle:
                self._busy = True
            try:
                while q:
                    call_safely(sinks, q.popleft(), self.failures)
            finally:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()

    def _run(self) -> None:
        while not self._stopped:
            self._wake.wait(self._interval)
            self._wake.clear()
            self._drain()
        self._drain()

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until everything queued so far has gone through the sinks, then flush the sinks."""
        deadline = time.monotonic() + timeout_s
        if self._thread is None or not self._thread.is_alive():
            self._drain()
        else:
            self._wake.set()
            with self._idle:
                while self._q or self._busy:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._wake.set()
                    self._idle.wait(min(left, 0.05))
        return flush_sinks(self.sinks, max(deadline - time.monotonic(), 0.0), self.failures)

    def shutdown(self, timeout_s: float = 30.0) -> None:
        self.flush(timeout_s)
        self._stopped = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        shutdown_sinks(self.sinks, self.failures)
