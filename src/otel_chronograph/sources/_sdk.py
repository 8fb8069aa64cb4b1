"""The OpenTelemetry SDK as a source: ``ReadableSpan`` -> :class:`SpanRecord`, and back for annotation.

This is the one module that reads SDK private attributes, and only for speed on the per-span path:
``ReadableSpan.attributes`` wraps the SDK's ``BoundedAttributes`` in a new proxy on every call (and a
missing key goes through ``KeyError``), while the SDK keeps a plain dict inside. Every read falls back
to the public property if the SDK ever changes that.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.util import BoundedList
from opentelemetry.trace import SpanContext, StatusCode

from ..engine._records import EMPTY, SpanRecord

__all__ = ["annotated_copy", "attributes_of", "record_of", "records_of", "resource_attributes",
           "start_fields"]

_ERROR = StatusCode.ERROR


def _plain(bounded: Any) -> Mapping[str, Any] | None:
    inner = getattr(bounded, "_dict", None)
    return inner if isinstance(inner, dict) else None


def attributes_of(span: Any) -> Mapping[str, Any]:
    """A span's attributes as a plain dict, read-only by convention."""
    inner = _plain(getattr(span, "_attributes", None))
    if inner is not None:
        return inner
    return span.attributes or EMPTY


def _tuple_layout() -> bool:
    """Whether ``SpanContext`` is the API's tuple (trace id, span id, is_remote, ...): then its fields
    are read by index, not through a property call each (a dozen per lap)."""
    try:
        c = SpanContext(0xA, 0xB, True)
        return isinstance(c, tuple) and (c[0], c[1], c[2]) == (c.trace_id, c.span_id, c.is_remote)
    except Exception:  # pragma: no cover - an API without the tuple layout
        return False


_TUPLE = _tuple_layout()


class _NoTuple:
    """Matches no context: with the API's tuple layout gone, every read takes the public API."""


# The class whose instances are read by index: one identity check on the per-span path.
_CTX: Any = SpanContext if _TUPLE else _NoTuple


def start_fields(span: Any) -> tuple[int | None, int | None, bool, Mapping[str, Any]]:
    """(span id or None without a context, parent span id or None, parent is remote, attributes) of a
    starting span, read in one call."""
    try:
        ctx, parent, attrs = span._context, span._parent, span._attributes._dict
    except AttributeError:  # not the SDK's span layout (or no attributes): the public API
        ctx, parent, attrs = span.context, span.parent, attributes_of(span)
    if ctx is None:
        return None, None, False, attrs
    if ctx.__class__ is _CTX and (parent is None or parent.__class__ is _CTX):
        return ctx[1], (parent[1] if parent is not None else None), (
            parent is not None and parent[2]), attrs
    return ctx.span_id, (parent.span_id if parent is not None else None), (
        parent is not None and parent.is_remote), attrs


_resources: dict[int, tuple[Resource, Mapping[str, Any]]] = {}
_last_resource: tuple[Resource | None, Mapping[str, Any]] = (None, EMPTY)


def resource_attributes(resource: Resource | None) -> Mapping[str, Any]:
    """The resource's attributes as one shared plain dict per resource object (a process has one or
    two; the identity of the dict is what tells the engine two spans came from the same process)."""
    global _last_resource
    if resource is None:
        return EMPTY
    last = _last_resource
    if last[0] is resource:
        return last[1]
    hit = _resources.get(id(resource))
    if hit is not None and hit[0] is resource:
        _last_resource = hit
        return hit[1]
    attrs = _plain(getattr(resource, "_attributes", None))
    if attrs is None:
        attrs = dict(resource.attributes)
    if len(_resources) > 64:  # resources are few; never let a pathological app grow this
        _resources.clear()
    _resources[id(resource)] = _last_resource = (resource, attrs)
    return attrs


def record_of(span: ReadableSpan) -> SpanRecord:
    """The record of an ended SDK span (the span itself is kept as ``source`` for annotation)."""
    return records_of((span,))[0]


def records_of(spans: Iterable[ReadableSpan]) -> list[SpanRecord]:
    """The records of ended SDK spans, in one loop (a lap's spans: no call per span).

    Reads the SDK's fields directly: every public property is a call, ``events`` copies a tuple, and
    ``attributes`` wraps a proxy; on the per-span path that was most of the adapter's cost.
    """
    out: list[SpanRecord] = []
    append = out.append
    ctx: Any
    parent: Any
    for span in spans:
        try:
            ctx = span._context
            parent = span._parent
            status = span._status
            inner = span._attributes._dict  # type: ignore[union-attr]
            if ctx.__class__ is _CTX and (parent is None or parent.__class__ is _CTX) and (
                    inner.__class__ is dict):
                error = status._status_code is _ERROR  # the API's Status keeps it there
                start = span._start_time or 0
                events: Any = span._events
                if events is None or (events.__class__ is BoundedList and not events._dq):  # type: ignore[attr-defined]
                    events = ()  # not the SDK's empty list: its truth test is a Python call per read
                resource = span._resource
                append(SpanRecord(
                    ctx[0], ctx[1], None if parent is None else parent[1], span._name, span._kind,
                    start, span._end_time or start, inner, events, error,
                    status.description if error else None,
                    last[1] if (last := _last_resource)[0] is resource else resource_attributes(resource),
                    None if parent is None else parent[2], span))
                continue
        except AttributeError:  # not the SDK's span layout
            pass
        append(_record_public(span))
    return out


def _record_public(span: ReadableSpan) -> SpanRecord:
    ctx = span.context
    parent = span.parent
    start = span.start_time or 0
    status = span.status
    error = status.status_code is _ERROR
    return SpanRecord(
        ctx.trace_id if ctx is not None else 0, ctx.span_id if ctx is not None else 0,
        parent.span_id if parent is not None else None, span.name, span.kind, start,
        span.end_time or start, attributes_of(span), span.events or (), error,
        status.description if error else None, resource_attributes(span.resource),
        parent.is_remote if parent is not None else None, span)


# ReadableSpan's parameters, in the order annotated_copy passes them.
_READABLE_PARAMS = ("name", "context", "parent", "resource", "attributes", "events", "links", "kind",
                    "instrumentation_info", "status", "start_time", "end_time", "instrumentation_scope")


def _positional_layout() -> bool:
    """Whether ``ReadableSpan`` takes exactly these parameters in this order: then the copy passes them
    positionally (13 keywords cost a third of the copy)."""
    try:
        code = ReadableSpan.__init__.__code__
        return code.co_varnames[1:code.co_argcount] == _READABLE_PARAMS
    except AttributeError:  # pragma: no cover - not a Python-level __init__
        return False


_POSITIONAL = _positional_layout()


def annotated_copy(root: ReadableSpan, extra: Mapping[str, Any]) -> ReadableSpan:
    """A frozen span can't take attributes, so exporters get a copy of the root with ``extra`` added.

    The ended root never changes again, so the copy shares its events and links (the SDK's bounded
    lists, which keep their dropped counts) instead of the tuples the public properties build.
    """
    sdk: Any = root  # its private fields
    try:
        attrs = sdk._attributes
        inner = attrs._dict if attrs is not None else EMPTY
        if isinstance(inner, dict):  # an older SDK's OrderedDict too
            fields = (sdk._name, sdk._context, sdk._parent, sdk._resource, {**inner, **extra}, sdk._events,
                      sdk._links, sdk._kind, None, sdk._status, sdk._start_time, sdk._end_time,
                      sdk._instrumentation_scope)
            if _POSITIONAL:
                return ReadableSpan(*fields)
            return ReadableSpan(**dict(zip(_READABLE_PARAMS, fields, strict=True)))
    except AttributeError:  # not the SDK's span layout: the public API
        pass
    return _annotated_public(root, extra)


def _annotated_public(root: ReadableSpan, extra: Mapping[str, Any]) -> ReadableSpan:
    attrs = dict(attributes_of(root))
    attrs.update(extra)
    return ReadableSpan(
        name=root.name, context=root.context, parent=root.parent, resource=root.resource,
        attributes=attrs, events=root.events, links=root.links, kind=root.kind, status=root.status,
        start_time=root.start_time, end_time=root.end_time,
        instrumentation_scope=root.instrumentation_scope,
    )
