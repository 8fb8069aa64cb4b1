"""Builders shared by the core tests: exact spans (integer nanoseconds) and small polling helpers."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

from otel_chronograph import ChronographConfig, load_config
from otel_chronograph._lap import Lap
from otel_chronograph.engine._derive import Deriver
from otel_chronograph.sources._sdk import record_of

MS = 1_000_000
T0 = 1_763_762_400_123 * MS  # an arbitrary epoch time in ns, whole milliseconds
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
ROOT_ID = 0x7F8A9B0C1D2E3F40
RESOURCE = Resource({"service.name": "svc-test"})


def ctx(span_id: int, trace_id: int = TRACE_ID, remote: bool = False) -> SpanContext:
    return SpanContext(trace_id, span_id, is_remote=remote, trace_flags=TraceFlags(TraceFlags.SAMPLED))


def mk(
    name: str,
    span_id: int,
    parent: int | None,
    start_ms: float,
    end_ms: float,
    *,
    attributes: Mapping[str, Any] | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    status: Status | None = None,
    events: tuple[Event, ...] = (),
    start_ns: int | None = None,
    end_ns: int | None = None,
    trace_id: int = TRACE_ID,
) -> ReadableSpan:
    """A finished span with exact times: ``T0 + ms`` (or explicit ``start_ns``/``end_ns``)."""
    return ReadableSpan(
        name=name,
        context=ctx(span_id, trace_id),
        parent=ctx(parent, trace_id) if parent is not None else None,
        resource=RESOURCE,
        attributes=dict(attributes or {}),
        events=events,
        kind=kind,
        status=status or Status(StatusCode.UNSET),
        start_time=start_ns if start_ns is not None else T0 + round(start_ms * MS),
        end_time=end_ns if end_ns is not None else T0 + round(end_ms * MS),
    )


def root(start_ms: float = 0, end_ms: float = 300, *, command: str = "faf score", span_id: int = ROOT_ID,
         attributes: Mapping[str, Any] | None = None, **kw: Any) -> ReadableSpan:
    attrs: dict[str, Any] = {"chronograph.lap": True, "chronograph.command": command}
    attrs.update(attributes or {})
    return mk(command, span_id, None, start_ms, end_ms, attributes=attrs, **kw)


def sec(name: str, span_id: int, parent: int | None, start_ms: float, end_ms: float, **kw: Any
        ) -> ReadableSpan:
    attrs = {"chronograph.sector": name, **kw.pop("attributes", {})}
    return mk(name, span_id, parent, start_ms, end_ms, attributes=attrs, **kw)


def event(name: str, at_ms: float, **attrs: Any) -> Event:
    return Event(name, attributes=attrs, timestamp=T0 + round(at_ms * MS))


class SdkDeriver(Deriver):
    """The deriver fed with SDK spans, converted to records as the in-process source does."""

    def derive(self, root: Any, spans: Any = (), command: str | None = None,  # type: ignore[override]
               truncated: bool = False, context: Mapping[str, Any] | None = None) -> Lap:
        return super().derive(record_of(root), [record_of(s) for s in spans], command, truncated, context)

    def sector_of(self, span: Any) -> str | None:
        return super().sector_of(span if not isinstance(span, ReadableSpan) else record_of(span))


def deriver(config: Mapping[str, Any] | ChronographConfig | None = None) -> SdkDeriver:
    return SdkDeriver(load_config(config or {}, environ={}))


def wait_for(predicate: Callable[[], Any], timeout_s: float = 20.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until truthy (returned) or fail after ``timeout_s``: no sleeps as sync."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
        time.sleep(0.002)


def D(text: str) -> Decimal:
    return Decimal(text)
