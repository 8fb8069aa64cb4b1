"""The OpenTelemetry SDK as a source: ``ReadableSpan`` -> :class:`SpanRecord`, and back for annotation.

This is the one module that reads SDK private attributes, and only for speed on the per-span path:
``ReadableSpan.attributes`` wraps the SDK's ``BoundedAttributes`` in a new proxy on every call (and a
missing key goes through ``KeyError``), while the SDK keeps a plain dict inside. Every read falls back
to the public property if the SDK ever changes that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import StatusCode

from ..engine._records import EMPTY, SpanRecord

__all__ = ["annotated_copy", "attributes_of", "record_of", "resource_attributes"]

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


_resources: dict[int, tuple[Resource, Mapping[str, Any]]] = {}


def resource_attributes(resource: Resource | None) -> Mapping[str, Any]:
    """The resource's attributes as one shared plain dict per resource object (a process has one or
    two; the identity of the dict is what tells the engine two spans came from the same process)."""
    if resource is None:
        return EMPTY
    hit = _resources.get(id(resource))
    if hit is not None and hit[0] is resource:
        return hit[1]
    attrs = _plain(getattr(resource, "_attributes", None))
    if attrs is None:
        attrs = dict(resource.attributes)
    if len(_resources) > 64:  # resources are few; never let a pathological app grow this
        _resources.clear()
    _resources[id(resource)] = (resource, attrs)
    return attrs


def record_of(span: ReadableSpan) -> SpanRecord:
    """The record of an ended SDK span (the span itself is kept as ``source`` for annotation).

    Reads the SDK's fields directly: every public property is a call, ``events`` copies a tuple, and
    ``attributes`` wraps a proxy; on the per-span path that was most of the adapter's cost.
    """
    try:
        ctx = span._context
        parent = span._parent
        start = span._start_time or 0
        end = span._end_time or start
        status = span._status
        attrs = span._attributes
        inner = attrs._dict if attrs is not None else EMPTY  # type: ignore[attr-defined]
        events = span._events
        resource = span._resource
        name, kind = span._name, span._kind
    except AttributeError:  # not the SDK's span layout: the public API
        return _record_public(span)
    error = status.status_code is _ERROR
    return SpanRecord(
        ctx.trace_id if ctx is not None else 0, ctx.span_id if ctx is not None else 0,
        parent.span_id if parent is not None else None, name, kind, start, end,
        inner if isinstance(inner, dict) else attributes_of(span), events or (), error,
        status.description if error else None, resource_attributes(resource),
        parent.is_remote if parent is not None else None, span)


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


def annotated_copy(root: ReadableSpan, extra: Mapping[str, Any]) -> ReadableSpan:
    """A frozen span can't take attributes, so exporters get a copy of the root with ``extra`` added."""
    attrs = dict(attributes_of(root))
    attrs.update(extra)
    return ReadableSpan(
        name=root.name, context=root.context, parent=root.parent, resource=root.resource,
        attributes=attrs, events=root.events, links=root.links, kind=root.kind, status=root.status,
        start_time=root.start_time, end_time=root.end_time,
        instrumentation_scope=root.instrumentation_scope,
    )
