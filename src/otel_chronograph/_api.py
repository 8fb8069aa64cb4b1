"""Instrumentation API: ``lap()`` and ``sector()`` as context managers and decorators (sync and async).

They create ordinary spans through the global (or a given) TracerProvider, so they nest with any
auto-instrumented span and concurrent laps never mix: the OpenTelemetry context (a ContextVar) keeps
each thread's and each asyncio task's current span apart.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from contextlib import AbstractContextManager
from contextvars import ContextVar
from types import TracebackType
from typing import Any, TypeVar, cast

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind, TracerProvider
from opentelemetry.util.types import AttributeValue

from ._lap import Lap

__all__ = ["LapHandle", "any_ending_handle", "ending_handle", "event", "lap", "sector"]

F = TypeVar("F", bound=Callable[..., Any])

# The handle of the ``lap()`` block whose span is ending, in this thread/task only: the processor runs
# inside ``span.end()``, so it finds the handle here without any registry that could leak.
_ending: ContextVar[LapHandle | None] = ContextVar("chronograph_ending_lap", default=None)
_tracers: dict[int, tuple[TracerProvider | None, trace.Tracer]] = {}


# The handle of the ``lap()`` block ending in this context, if any, without checking its span: one C
# call, where ending_handle() is a Python one (most laps come from auto-instrumentation, not lap()).
any_ending_handle = _ending.get


def ending_handle(span_id: int) -> LapHandle | None:
    """The handle of the ``lap()`` block ending ``span_id`` right now, if any (gets the telemetry)."""
    handle = _ending.get()
    if handle is not None and handle.span.get_span_context().span_id == span_id:
        return handle
    return None


def _tracer(provider: TracerProvider | None) -> trace.Tracer:
    key = id(provider)
    hit = _tracers.get(key)
    if hit is not None and hit[0] is provider:
        return hit[1]
    from ._version import __version__

    tracer = trace.get_tracer("otel_chronograph", __version__, tracer_provider=provider)
    _tracers[key] = (provider, tracer)
    return tracer


class LapHandle:
    """What ``with lap(...) as handle`` gives: add events, then read ``handle.telemetry`` after the block."""

    __slots__ = ("span", "telemetry")

    def __init__(self, span: Span) -> None:
        self.span = span
        self.telemetry: Lap | None = None

    def event(self, name: str, **details: AttributeValue) -> None:
        """A flight-recorder milestone on the lap span, with its details as attributes."""
        self.span.add_event(name, details)

    @property
    def request_id(self) -> str:
        return "req_" + format(self.span.get_span_context().span_id, "016x")


class _Scope:
    """One span scope; a fresh one per ``with``/call so a decorator is safe across threads and tasks."""

    def __init__(self, name: str, kind: SpanKind, attributes: dict[str, AttributeValue],
                 tracer_provider: TracerProvider | None, is_lap: bool) -> None:
        self._name = name
        self._kind = kind
        self._attributes = attributes
        self._provider = tracer_provider
        self._is_lap = is_lap
        self._cm: AbstractContextManager[Span] | None = None
        self._handle: LapHandle | None = None

    def _fresh(self) -> _Scope:
        return type(self)(self._name, self._kind, self._attributes, self._provider, self._is_lap)

    def __enter__(self) -> Any:
        cm = _tracer(self._provider).start_as_current_span(
            self._name, kind=self._kind, attributes=self._attributes,
            record_exception=True, set_status_on_exception=True)
        span = cm.__enter__()
        self._cm = cm
        if not self._is_lap:
            return span
        handle = LapHandle(span)
        self._handle = handle
        return handle

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool | None:
        assert self._cm is not None
        if self._handle is None:
            return self._cm.__exit__(exc_type, exc, tb)
        token = _ending.set(self._handle)
        try:
            return self._cm.__exit__(exc_type, exc, tb)
        finally:
            _ending.reset(token)

    async def __aenter__(self) -> Any:
        return self.__enter__()

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> bool | None:
        return self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return await func(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return func(*args, **kwargs)

        return cast(F, wrapper)


def lap(
    command: str,
    *,
    tier: str | None = None,
    customer: str | None = None,
    score: float | None = None,
    session_id: str | None = None,
    kind: SpanKind = SpanKind.INTERNAL,
    tracer_provider: TracerProvider | None = None,
    **attributes: AttributeValue,
) -> _Scope:
    """A lap: one request, command or tool call. ``with lap("faf score", tier="pro") as l: ...``."""
    attrs: dict[str, AttributeValue] = {"chronograph.lap": True, "chronograph.command": command}
    if tier is not None:
        attrs["chronograph.tier"] = tier
    if customer is not None:
        attrs["chronograph.customer"] = customer
    if score is not None:
        attrs["chronograph.score"] = score
    if session_id is not None:
        attrs["session.id"] = session_id
    attrs.update(attributes)
    return _Scope(command, kind, attrs, tracer_provider, is_lap=True)


def sector(name: str, *, tracer_provider: TracerProvider | None = None,
           **attributes: AttributeValue) -> _Scope:
    """A sector (phase) of the current lap, as a child span carrying ``chronograph.sector``."""
    attrs: dict[str, AttributeValue] = {"chronograph.sector": name, **attributes}
    return _Scope(name, SpanKind.INTERNAL, attrs, tracer_provider, is_lap=False)


def event(name: str, **details: AttributeValue) -> None:
    """A milestone on the current span (inside a lap or sector) without holding the handle."""
    trace.get_current_span().add_event(name, details)
