"""One background-worker helper for every thread the plugin runs (deferred sinks, grace sweeper,
recorder writer and purge, billing sender).

Why one helper: each of them needs the same five things and got them subtly wrong apart — start once
under a lock (laps end on many threads), wake on demand, stop and join within a deadline, and come back
to life in a child forked after the thread started. ``fork()`` copies only the calling thread, so
without re-initialisation a gunicorn ``--preload`` worker (or uWSGI, or multiprocessing) would queue laps
forever for a thread that does not exist. Like the SDK's ``BatchSpanProcessor``, the child re-creates its
synchronisation objects and starts the thread again on next use (``os.register_at_fork``).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Callable

__all__ = ["Deadline", "Worker"]

_log = logging.getLogger("otel_chronograph")


class Worker:
    """A daemon thread calling ``step()`` each time it is woken or ``interval_s`` has passed.

    ``step`` returns the seconds until it wants to run again (``None``: the default interval). It must
    not raise: an exception is logged once and the worker goes on (a dead worker would lose data
    silently). ``after_fork`` runs in a forked child before the worker can restart, so the owner can
    drop state that belongs to the parent (queued items the parent will handle, SQLite connections).
    """

    def __init__(self, name: str, step: Callable[[], float | None], interval_s: float = 1.0,
                 after_fork: Callable[[], None] | None = None) -> None:
        self.name = name
        self._step = step
        self._interval = interval_s
        self._after_fork = after_fork
        self._reinit()
        self._failed_once = False
        if hasattr(os, "register_at_fork"):
            ref = weakref.WeakMethod(self._at_fork_child)

            def child() -> None:
                method = ref()
                if method is not None:
                    method()

            os.register_at_fork(after_in_child=child)

    def _reinit(self) -> None:
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def _at_fork_child(self) -> None:
        was_stopping = self._stopping
        self._reinit()
        self._stopping = was_stopping
        if self._after_fork is not None:
            try:
                self._after_fork()
            except Exception:  # pragma: no cover - an owner's bug must not break the child's fork
                _log.warning("chronograph: %s failed to reset after fork", self.name, exc_info=True)

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def started(self) -> bool:
        """Cheap: whether a thread was started in this process (False again in a forked child)."""
        return self._thread is not None

    def alive(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> bool:
        """Start the thread if it is not running (idempotent, thread-safe). False once stopped."""
        if self._thread is not None:
            return not self._stopping
        with self._lock:
            if self._stopping:
                return False
            if self._thread is None:
                thread = threading.Thread(target=self._run, name=self.name, daemon=True)
                thread.start()
                self._thread = thread  # published only once started: stop() never joins an unstarted one
        return True

    def wake(self) -> None:
        """Run ``step`` soon (starting the thread if needed)."""
        if self._thread is None and not self.start():
            return
        self._wake.set()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Stop, run ``step`` once more in the thread, and join; True if it ended within the timeout."""
        with self._lock:
            self._stopping = True
            thread = self._thread
        self._wake.set()
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout_s)
        return not thread.is_alive()

    def _run(self) -> None:
        wait: float | None = None
        while True:
            self._wake.wait(self._interval if wait is None else max(wait, 0.0))
            self._wake.clear()
            stopping = self._stopping
            wait = self._safe_step()
            if stopping:
                return

    def _safe_step(self) -> float | None:
        try:
            return self._step()
        except Exception:
            if not self._failed_once:
                self._failed_once = True
                _log.warning("chronograph: background worker %s failed; it keeps running", self.name,
                             exc_info=True)
            return None


class Deadline:
    """One overall deadline shared by the stages of a flush or shutdown (not a full timeout each)."""

    __slots__ = ("_end",)

    def __init__(self, timeout_s: float | None) -> None:
        self._end = None if timeout_s is None else time.monotonic() + timeout_s

    def left(self) -> float | None:
        """Seconds left (never negative), or None for no limit."""
        return None if self._end is None else max(self._end - time.monotonic(), 0.0)

    def expired(self) -> bool:
        return self._end is not None and time.monotonic() >= self._end
