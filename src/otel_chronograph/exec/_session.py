"""One ``chronograph exec`` invocation's telemetry: the lap and its sectors, the child's spans, the sinks.

Shared by the local run and the remote one (routing), so both give the same lap shape and the same
split-time table, billing row and export.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from opentelemetry.context import Context
from opentelemetry.trace import NonRecordingSpan, Span, SpanContext, SpanKind, set_span_in_context
from opentelemetry.util.types import AttributeValue

from .._api import lap, sector
from .._config import ChronographConfig
from .._setup import build_sinks
from ._join import ChildSpans, JoiningProcessor
from ._receiver import Receiver
from ._telemetry import Telemetry

__all__ = ["SECTORS", "Session", "exec_view"]

SECTORS = ("spawn", "run", "output")


def exec_view(config: ChronographConfig, as_json: bool) -> ChronographConfig:
    """The configuration as ``exec`` uses it: the split-time table on stderr unless the file or the
    environment says otherwise (off with ``--json``); the flight recorder only when persistent (an
    in-memory one dies with the process)."""
    display = config.display
    if as_json:
        display = display.model_copy(update={"split_times": False})
    elif "split_times" not in display.model_fields_set:
        display = display.model_copy(update={"split_times": True})
    recorder = config.recorder.model_copy(update={"enabled": config.recorder.enabled
                                                  and config.recorder.persistent})
    return config.model_copy(update={"display": display, "recorder": recorder})


class Session:
    """Tracing for one run: SDK provider with the chronograph processor, the exporting processors from
    the standard variables, and (``receive=True``) the embedded receiver for the child's spans."""

    def __init__(self, config: ChronographConfig, receive: bool, service: str = "chronograph-exec") -> None:
        self.config = config
        self.telemetry = Telemetry.from_environment(service)
        exporting = self.telemetry.exporting
        sync, deferred = build_sinks(config, self.telemetry.meters)
        self.children = ChildSpans(exporting, config.laps.max_spans_per_trace)
        self.processor = JoiningProcessor(self.children, config, exporting, self.telemetry.meters, sinks=sync,
                                          deferred_sinks=deferred, metrics_enabled=False,
                                          health=config.enabled)
        self.telemetry.provider.add_span_processor(self.processor)
        self.receiver = Receiver(self.children.on_request) if receive else None

    def lap(self, command: str, tier: str | None, customer: str | None, kind: SpanKind = SpanKind.INTERNAL,
            attributes: Mapping[str, AttributeValue] | None = None) -> Any:
        return lap(command, tier=tier, customer=customer, kind=kind, tracer_provider=self.telemetry.provider,
                   **cast("dict[str, Any]", attributes or {}))

    def sector(self, name: str) -> Any:
        return sector(name, tracer_provider=self.telemetry.provider)

    def next_span_context(self, current: Span) -> Context:
        """A context whose span is the *next* span to start (its id reserved now): the child's parent."""
        ctx = current.get_span_context()
        span_id = self.telemetry.ids.reserve()
        self.children.expect(ctx.trace_id)
        return set_span_in_context(NonRecordingSpan(SpanContext(ctx.trace_id, span_id, False, ctx.trace_flags,
                                                                ctx.trace_state)))

    def wait_for_children(self, timeout_s: float = 1.0) -> None:
        """A child's exporter answered before it exited; a grandchild may still be exporting."""
        if self.receiver is not None:
            self.receiver.wait_idle(timeout_s)

    def close(self) -> None:
        if self.receiver is not None:
            self.receiver.stop()
        self.telemetry.shutdown()
