"""The child's side: join the trace ``chronograph exec`` passed in the environment, without code changes.

The OpenTelemetry SDK does not read ``TRACEPARENT`` by itself. Under auto-instrumentation with the
chronograph configurator, a process started by ``chronograph exec`` (which sets ``CHRONOGRAPH_EXEC_JOIN``)
makes the carried context its main thread's current context at start-up, so spans it starts without
another parent hang under the exec lap's ``run`` sector. Only then: a long-lived server started some
other way with a stale ``TRACEPARENT`` in its environment is left alone, and request spans that extract
their parent from headers are unaffected either way (new threads start with an empty context).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import context, trace

from ._carriers import context_from_environment

__all__ = ["JOIN_ENV", "join_parent_trace"]

JOIN_ENV = "CHRONOGRAPH_EXEC_JOIN"


def join_parent_trace(environ: Mapping[str, str] | None = None) -> bool:
    """Attach the environment's trace context when ``CHRONOGRAPH_EXEC_JOIN`` asks for it; True if joined."""
    env = os.environ if environ is None else environ
    if env.get(JOIN_ENV) != "1":
        return False
    ctx = context_from_environment(env)
    if not trace.get_current_span(ctx).get_span_context().is_valid:
        return False
    context.attach(ctx)  # for the life of the process: its main thread runs the command's work
    return True
