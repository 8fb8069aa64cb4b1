"""Flush telemetry when the process is ended by SIGTERM, for apps we configure from outside.

``atexit`` does not run when a process dies from a signal with the default handler. Servers such as
uvicorn (since 0.29) handle SIGTERM gracefully and then re-raise it with the handler that was there
before them, so the process dies by signal: the BatchSpanProcessor's queue (the last requests' spans
and laps) was lost, in 3 of 9 runs of the two-service test. Under auto-instrumentation the configurator
puts this handler in place of the default one: it shuts the providers down (one deadline) and then
re-raises SIGTERM with the default handler, so the exit status is what it would have been.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from types import FrameType

__all__ = ["flush_on_sigterm"]

_installed = False


def flush_on_sigterm(shutdown: Callable[[], None], timeout_s: float = 10.0) -> bool:
    """Install the handler if SIGTERM still has its default disposition; True if installed."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return False  # the application handles SIGTERM itself (and then exits normally: atexit runs)

    def handler(signum: int, frame: FrameType | None) -> None:
        # In a thread: the signal may arrive while this (main) thread holds a lock shutdown needs.
        worker = threading.Thread(target=shutdown, name="chronograph-sigterm-flush", daemon=True)
        worker.start()
        worker.join(timeout_s)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, handler)
    _installed = True
    return True
