"""``chronograph exec -- ARGV``: run a command here as a lap with ``spawn``, ``run`` and ``output`` sectors.

The child inherits our stdin, stdout and stderr (a terminal stays a terminal: colours, prompts, binary
output pass through untouched), gets a merged copy of the environment with the trace carriers and the
embedded receiver's address, and its exit status comes back as ours (128 + N after signal N, as a shell
reports it). ``run`` is the child's lifetime: its spans hang under it (``TRACEPARENT`` names the ``run``
span, whose id is reserved before spawning); ``output`` is the wait for its last spans and the flush
of what we print.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opentelemetry.trace import Span, Status, StatusCode

from ._carriers import child_environment
from ._session import Session
from ._signals import SignalForwarder, exit_code, signal_name

__all__ = ["SpawnError", "finish", "run_here", "spawn"]

NOT_FOUND = 127
NOT_EXECUTABLE = 126


@dataclass
class SpawnError(Exception):
    """The command could not start; ``code`` is what a shell would exit with (126, 127)."""

    code: int
    message: str


def spawn(argv: Sequence[str], env: Mapping[str, str], mask: set[int]) -> int:
    """Start ``argv`` (PATH searched as a shell does) with ``env`` and signal ``mask``; its pid."""
    program = argv[0]
    path = program if "/" in program else shutil.which(program, path=env.get("PATH", os.defpath))
    if path is None:
        raise SpawnError(NOT_FOUND, f"{program}: command not found")
    try:
        # Python ignores SIGPIPE and SIGXFSZ; the child gets the defaults back, as subprocess does.
        return os.posix_spawn(path, list(argv), dict(env), setsigmask=mask,
                              setsigdef=(signal.SIGPIPE, signal.SIGXFSZ))
    except FileNotFoundError:
        raise SpawnError(NOT_FOUND, f"{program}: command not found") from None
    except OSError as exc:
        raise SpawnError(NOT_EXECUTABLE, f"{program}: {exc.strerror or exc}") from None


def finish(span: Span, code: int, signalled: int | None = None) -> None:
    """The lap span's outcome: ``process.exit.code``, and status ERROR for a failure (a RED lap)."""
    span.set_attribute("process.exit.code", code)
    if signalled is not None:
        span.set_status(Status(StatusCode.ERROR, f"killed by {signal_name(signalled)}"))
    elif code != 0:
        span.set_status(Status(StatusCode.ERROR, f"exited with status {code}"))


def run_here(session: Session, lap_span: Span, argv: Sequence[str], forwarder: SignalForwarder,
             extra_env: Mapping[str, str] | None = None) -> int:
    """The ``spawn``, ``run`` and ``output`` sectors of running ``argv`` here, inside the current lap;
    the exit code. ``forwarder`` was created before any thread started (signals blocked)."""
    with session.sector("spawn"):
        parent = session.next_span_context(lap_span)
        url = session.receiver.url if session.receiver is not None else None
        env = child_environment({**os.environ, **(extra_env or {})}, parent, url)
        try:
            pid = spawn(argv, env, forwarder.child_mask)
        except SpawnError as exc:
            session.telemetry.ids.release()
            sys.stderr.write(f"chronograph exec: {exc.message}\n")
            finish(lap_span, exc.code)
            return exc.code
    lap_span.set_attribute("process.pid", pid)
    with session.sector("run"):
        status = forwarder.wait(pid)
    for at, signo, sent in forwarder.received:  # milestones of the lap: who was told what, when
        lap_span.add_event("exec.signal", {"signal": signal_name(signo), "forwarded": sent},
                           timestamp=at)
    code = exit_code(status)
    with session.sector("output"):
        session.wait_for_children()
        sys.stdout.flush()
    finish(lap_span, code, os.WTERMSIG(status) if os.WIFSIGNALED(status) else None)
    return code
