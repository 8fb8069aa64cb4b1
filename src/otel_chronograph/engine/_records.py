"""The plain span record every source produces and the engine consumes (SPEC.md Part 2).

Independent of the OpenTelemetry SDK on purpose: the same derivation must run on live SDK spans, on
OTLP protobuf received by the gateway and on OTLP JSON read from files, and give the same lap. A record
holds only what assembly, rules and derivation read; ``source`` keeps the original object (an SDK span,
a protobuf message) so a source can forward or annotate it without a conversion back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry.trace import SpanKind

__all__ = ["EMPTY", "EventRecord", "SpanRecord"]

EMPTY: Mapping[str, Any] = {}


class EventRecord:
    """A span event (same field names as the SDK's ``Event``, so both can be read alike)."""

    __slots__ = ("attributes", "name", "timestamp")

    def __init__(self, name: str, timestamp: int, attributes: Mapping[str, Any]) -> None:
        self.name = name
        self.timestamp = timestamp
        self.attributes = attributes

    def __repr__(self) -> str:
        return f"EventRecord({self.name!r}, {self.timestamp}, {dict(self.attributes)!r})"


class SpanRecord:
    """One ended span: ids, name, kind, times (ns), status, attributes, events and resource attributes.

    ``parent_remote`` is True/False when the source knows (SDK, OTLP ``flags``) and None otherwise; a
    resource's attribute dict is shared by all its spans (identity tells offline sources which spans
    came from the same process). Records are small: a pending lap keeps thousands of them.
    """

    __slots__ = ("attributes", "end_time", "error", "events", "kind", "name", "parent_id",
                 "parent_remote", "resource", "source", "span_id", "start_time", "status_message",
                 "trace_id")

    def __init__(self, trace_id: int, span_id: int, parent_id: int | None, name: str, kind: SpanKind,
                 start_time: int, end_time: int, attributes: Mapping[str, Any] = EMPTY,
                 events: Sequence[Any] = (), error: bool = False, status_message: str | None = None,
                 resource: Mapping[str, Any] = EMPTY, parent_remote: bool | None = None,
                 source: Any = None) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.name = name
        self.kind = kind
        self.start_time = start_time
        self.end_time = end_time
        self.attributes = attributes
        self.events = events
        self.error = error
        self.status_message = status_message
        self.resource = resource
        self.parent_remote = parent_remote
        self.source = source

    def __repr__(self) -> str:
        parent = f"{self.parent_id:016x}" if self.parent_id is not None else None
        return (f"SpanRecord({self.name!r}, span={self.span_id:016x}, parent={parent}, "
                f"kind={self.kind.name}, {self.start_time}..{self.end_time})")
