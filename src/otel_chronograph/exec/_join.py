"""How a child's spans join the lap of ``chronograph exec``, and are exported exactly once.

The lap is the exec process's own span tree (SDK, ``lap()``/``sector()``), derived by the usual
:class:`~otel_chronograph.ChronographProcessor`. A child's spans arrive as OTLP at the embedded
receiver; each becomes a :class:`~otel_chronograph.SpanRecord` (the shared ``records_from_proto``) and
an SDK ``ReadableSpan`` for the exporting processors. They are forwarded unchanged as they arrive (once:
an exporter's retry of the same span is recognised) and the records of the lap's trace are kept, bounded,
until the lap root ends; then they join the lap's records before derivation, so a child span carrying
``chronograph.sector`` is that sector, and any other counts toward ``run`` (its parent). A span that
arrives after the lap was derived is still exported, and counted as late.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator, Sequence
from typing import Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import Link, SpanContext, Status, StatusCode, TraceFlags, TraceState

from .._pipeline import log_once
from ..engine import SpanRecord
from ..engine._assembly import Completed
from ..sources import ChronographProcessor, records_from_proto
from ..sources._otlp import value_from_proto

__all__ = ["ChildSpans", "JoiningProcessor", "readable_spans"]

_IS_REMOTE = 0x200
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)  # it was exported, so it was sampled
_MAX_SEEN = 100_000


def _attrs(kvs: Any) -> dict[str, Any]:
    return {kv.key: value_from_proto(kv.value) for kv in kvs}


def _state(header: str) -> TraceState | None:
    return TraceState.from_header([header]) if header else None


def readable_spans(resource_spans: Any) -> Iterator[tuple[SpanRecord, ReadableSpan]]:
    """(record, SDK span) for every span of one ``ResourceSpans`` message. Raises ``OTLPError``."""
    resource = Resource(_attrs(resource_spans.resource.attributes), resource_spans.schema_url or None)
    scoped = [(ss, s) for ss in resource_spans.scope_spans for s in ss.spans]
    scopes: dict[int, InstrumentationScope] = {}
    for record, (ss, s) in zip(records_from_proto([resource_spans]), scoped, strict=True):
        scope = scopes.get(id(ss))
        if scope is None:
            scope = scopes[id(ss)] = InstrumentationScope(
                ss.scope.name, ss.scope.version or None, ss.schema_url or None, _attrs(ss.scope.attributes))
        parent = None
        if record.parent_id is not None:
            parent = SpanContext(record.trace_id, record.parent_id, bool(s.flags & _IS_REMOTE), _SAMPLED)
        yield record, ReadableSpan(
            name=s.name,
            context=SpanContext(record.trace_id, record.span_id, False, _SAMPLED, _state(s.trace_state)),
            parent=parent, resource=resource, attributes=dict(record.attributes),
            events=[Event(e.name, _attrs(e.attributes), e.time_unix_nano) for e in s.events],
            links=[Link(SpanContext(int.from_bytes(link.trace_id, "big"), int.from_bytes(link.span_id, "big"),
                                    True, _SAMPLED, _state(link.trace_state)), _attrs(link.attributes))
                   for link in s.links if len(link.trace_id) == 16 and len(link.span_id) == 8],
            kind=record.kind, status=Status(StatusCode(s.status.code) if s.status.code in (0, 1, 2)
                                            else StatusCode.UNSET, s.status.message or None),
            start_time=record.start_time, end_time=record.end_time, instrumentation_scope=scope)


class ChildSpans:
    """Spans received from children: forwarded once to the exporting processors; the records of the
    expected traces kept (at most ``max_spans`` per trace, the rest counted) until taken."""

    def __init__(self, exporting: Sequence[SpanProcessor], max_spans: int) -> None:
        self._exporting = list(exporting)
        self._max = max_spans
        self._lock = threading.Lock()
        self._kept: dict[int, list[SpanRecord]] = {}
        self._taken: set[int] = set()
        self._seen: set[tuple[int, int]] = set()
        self.received = 0
        self.joined = 0
        self.dropped = 0
        self.late = 0
        self.duplicates = 0

    def expect(self, trace_id: int) -> None:
        """Keep the records of this trace (the lap's) until :meth:`take`."""
        with self._lock:
            self._kept.setdefault(trace_id, [])

    def take(self, trace_id: int) -> list[SpanRecord]:
        """The records kept for this trace; later ones are only exported (and counted as late)."""
        with self._lock:
            self._taken.add(trace_id)
            return self._kept.pop(trace_id, [])

    def on_request(self, message: Any) -> None:
        """An ``ExportTraceServiceRequest`` from a child (called by the receiver's threads)."""
        converted = [pair for rs in message.resource_spans for pair in readable_spans(rs)]
        forward: list[ReadableSpan] = []
        with self._lock:
            for record, span in converted:
                key = (record.trace_id, record.span_id)
                if key in self._seen:
                    self.duplicates += 1
                    continue
                if len(self._seen) < _MAX_SEEN:
                    self._seen.add(key)
                self.received += 1
                forward.append(span)
                kept = self._kept.get(record.trace_id)
                if kept is None:
                    if record.trace_id in self._taken:
                        self.late += 1
                elif len(kept) < self._max:
                    kept.append(record)
                    self.joined += 1
                else:
                    self.dropped += 1
        for span in forward:
            for processor in self._exporting:
                processor.on_end(span)


class JoiningProcessor(ChronographProcessor):
    """The chronograph processor, with a child's spans added to the lap of their trace when it completes."""

    def __init__(self, children: ChildSpans, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.children = children

    def _finish_ended(self, completed: Sequence[Completed[SpanRecord]]) -> None:
        try:
            completed = [self._join(c) for c in completed]
        except Exception:  # the laps are still derived, from the spans of this process
            self.engine.failures[0] += 1
            log_once("exec-join", "chronograph exec failed to join a child's spans to its lap")
        super()._finish_ended(completed)

    def _join(self, completed: Completed[SpanRecord]) -> Completed[SpanRecord]:
        extra = self.children.take(completed.root.trace_id)
        if not extra:
            return completed
        return dataclasses.replace(completed, spans=[*completed.spans, *extra],
                                   truncated=completed.truncated or self.children.dropped > 0)
