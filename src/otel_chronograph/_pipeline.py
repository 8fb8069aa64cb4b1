"""Lap sinks and the deferred queue that runs the non-urgent ones off the application's path.

A sink is any callable taking a :class:`Lap` (structlog-style: small, composable). It may also have
``flush(timeout_s)`` and ``shutdown()``; the pipeline calls them when present.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

from ._lap import Lap, Lazy
from ._worker import Deadline, Worker

__all__ = ["DeferredSinks", "LapSink", "call_safely", "flush_sinks", "shutdown_sinks"]

_log = logging.getLogger("otel_chronograph")


@runtime_checkable
class LapSink(Protocol):
    def __call__(self, lap: Lap) -> None: ...


class _Once:
    """Log a failure the first time for each key, then count silently (no log storms in a hot path)."""

    def __init__(self) -> None:
        self._seen: set[str] = set()

    def forget(self, key: str) -> None:
        """Log ``key`` again next time (a condition that cleared and came back, or a test)."""
        self._seen.discard(key)

    def __call__(self, key: str, msg: str, *args: object, traceback: bool | None = None) -> None:
        if key not in self._seen:
            self._seen.add(key)
            # By default a traceback only when called while handling one (not for eviction notices);
            # expected conditions (a full disk) pass traceback=False: the reason is in the message.
            show = sys.exc_info()[1] is not None if traceback is None else traceback
            _log.warning(msg, *args, exc_info=show)


log_once = _Once()


def _name(sink: object) -> str:
    return getattr(sink, "__name__", type(sink).__name__)


def call_safely(sinks: Sequence[Callable[[Lap], None]], lap: Lap, failures: list[int]) -> None:
    """Run every sink; one failing sink neither stops the others nor reaches the application.

    ``SystemExit``/``KeyboardInterrupt`` from a sink still run the other sinks and then propagate: the
    caller forwards the lap root before re-raising, so the span is never lost to them.
    """
    pending: BaseException | None = None
    for sink in sinks:
        try:
            sink(lap)
        except Exception:
            failures[0] += 1
            log_once(f"sink:{_name(sink)}", "chronograph sink %s failed; further failures are counted",
                     _name(sink))
        except BaseException as exc:
            failures[0] += 1
            pending = pending or exc
    if pending is not None:
        raise pending


def flush_sinks(sinks: Sequence[object], deadline: Deadline, failures: list[int]) -> bool:
    """Call ``flush(timeout_s)`` on every sink that has one, all within one deadline; False if any
    failed, said False, or the deadline passed before its turn."""
    ok = True
    for sink in sinks:
        flush = getattr(sink, "flush", None)
        if callable(flush):
            left = deadline.left()
            if left == 0.0:
                return False
            try:
                ok = flush(30.0 if left is None else left) is not False and ok
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


def _settle(lap: Lap) -> None:
    """Build the lap's timeline now, so that it lets go of its span records (and SDK spans) before it
    waits in the queue. Laps wait up to ``interval_s`` (hundreds of them under load); holding their
    records meanwhile made them survive a collection and cost the garbage collector more than the
    timeline costs to build: ~68k instructions per lap against ~30k (docs/performance.md, round 3)."""
    for seq in (lap.events, lap.spans):
        if isinstance(seq, Lazy):
            seq.compact()


class DeferredSinks:
    """A bounded queue drained in batches by one fork-safe worker; overflow is counted, never blocking.

    After ``shutdown()`` laps are not queued any more (the sinks are closed): they are counted in
    ``after_shutdown`` (reported as dropped), never silently lost.
    """

    def __init__(self, sinks: Sequence[Callable[[Lap], None]], max_queue: int = 65_536,
                 batch: int = 256, interval_s: float = 0.2) -> None:
        self.sinks = list(sinks)
        self._q: deque[Lap] = deque()
        self._max = max_queue
        self._batch = batch
        self._idle = threading.Condition()
        self._busy = False
        self._closed = False
        self.dropped = 0
        self.after_shutdown = 0
        self.failures = [0]
        self._worker = Worker("chronograph-sinks", self._step, interval_s, after_fork=self._after_fork)

    def _after_fork(self) -> None:
        # Laps queued before fork() are the parent's to deliver; the child starts empty.
        self._q.clear()
        self._idle = threading.Condition()
        self._busy = False

    def put(self, lap: Lap) -> None:
        if not self.sinks:
            return
        if self._closed:
            self.after_shutdown += 1
            log_once("after-shutdown", "chronograph: laps ended after shutdown() are not recorded "
                     "(counted in chronograph.sink_dropped)")
            return
        if len(self._q) >= self._max:
            self.dropped += 1
            return
        try:
            _settle(lap)
        except Exception:  # never into the application: the sinks meet it again, counted there
            log_once("settle", "chronograph failed to build a lap's timeline; its sinks will retry")
        self._q.append(lap)
        if len(self._q) >= self._batch or not self._worker.started:
            self._worker.wake()

    def depth(self) -> int:
        return len(self._q)

    def _step(self) -> None:
        self._drain()

    def _drain(self) -> None:
        q = self._q
        sinks = self.sinks
        while q:
            with self._idle:
                self._busy = True
            try:
                while q:
                    try:
                        call_safely(sinks, q.popleft(), self.failures)
                    except BaseException:
                        log_once("sink-base", "chronograph: a sink raised SystemExit/KeyboardInterrupt "
                                 "in the background; counted and ignored")
            finally:
                with self._idle:
                    self._busy = False
                    self._idle.notify_all()

    def flush(self, deadline: Deadline | float = 30.0) -> bool:
        """Wait until everything queued so far has gone through the sinks, then flush the sinks."""
        if not isinstance(deadline, Deadline):
            deadline = Deadline(deadline)
        if not self._worker.alive():
            self._drain()
        else:
            self._worker.wake()
            with self._idle:
                while self._q or self._busy:
                    left = deadline.left()
                    if left == 0.0:
                        return False
                    self._worker.wake()
                    self._idle.wait(0.05 if left is None else min(left, 0.05))
        return flush_sinks(self.sinks, deadline, self.failures)

    def shutdown(self, deadline: Deadline | float = 30.0) -> bool:
        """Deliver what is queued and stop, within one deadline; True if everything went through."""
        if not isinstance(deadline, Deadline):
            deadline = Deadline(deadline)
        ok = self.flush(deadline)
        self._closed = True
        ok = self._worker.stop(deadline.left()) and ok
        shutdown_sinks(self.sinks, self.failures)
        return ok
