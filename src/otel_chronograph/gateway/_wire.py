"""Forwarding spans as the bytes they arrived in: export requests assembled from serialized spans, and
the annotated copy of a lap root.

A span received by the gateway is kept as its serialized protobuf (``GatewayRecord.source``). Export
requests are written directly in the wire format (``ExportTraceServiceRequest`` and ``TracesData`` are
the same bytes): spans are regrouped under their original resource and scope, never converted through
SDK objects or re-parsed. Only a lap root is parsed again, to add the ``chronograph.*`` attributes.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from .._lap import Lap
from ..engine._derive import lap_attributes
from ._records import GatewayRecord, ld

__all__ = ["Batch", "annotated_span", "batches", "set_any_value"]

MAX_REQUEST_BYTES = 3 * 1024 * 1024  # under gRPC's default 4 MiB receive limit, with room for headers
MAX_REQUEST_SPANS = 8192

Batch = tuple[bytes, int]  # (serialized ExportTraceServiceRequest, span count)


def set_any_value(target: Any, value: Any) -> None:
    """Fill an ``AnyValue`` message from a Python attribute value."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, bytes):
        target.bytes_value = value
    elif isinstance(value, (list, tuple)):
        array = target.array_value
        for item in value:
            set_any_value(array.values.add(), item)
    else:
        target.string_value = str(value)


def annotated_span(raw: bytes, attributes: Mapping[str, Any]) -> bytes:
    """A copy of the serialized span with ``attributes`` set (replacing keys it already had)."""
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    span = Span.FromString(raw)
    existing = span.attributes
    if any(kv.key in attributes for kv in existing):
        kept = [kv for kv in existing if kv.key not in attributes]
        del existing[:]
        existing.extend(kept)
    for key, value in attributes.items():
        kv = existing.add()
        kv.key = key
        set_any_value(kv.value, value)
    out: bytes = span.SerializeToString()
    return out


def annotate_root(record: GatewayRecord, lap: Lap) -> bytes:
    return annotated_span(record.source, lap_attributes(lap))


def _encode(items: Sequence[tuple[tuple[bytes, bytes], bytes]]) -> bytes:
    by_resource: dict[bytes, dict[bytes, list[bytes]]] = {}
    for (resource, scope), raw in items:
        scopes = by_resource.get(resource)
        if scopes is None:
            scopes = by_resource[resource] = {}
        spans = scopes.get(scope)
        if spans is None:
            spans = scopes[scope] = []
        spans.append(ld(b"\x12", raw))
    out = []
    for resource, scopes in by_resource.items():
        body = [resource]
        body.extend(ld(b"\x12", scope + b"".join(spans)) for scope, spans in scopes.items())
        out.append(ld(b"\x0a", b"".join(body)))
    return b"".join(out)


def batches(records: Iterable[GatewayRecord], replaced: Mapping[int, bytes] | None = None
            ) -> Iterator[Batch]:
    """Export requests holding ``records`` (``replaced``: ``id(record)`` -> the bytes to send instead,
    for annotated roots), each under the size and span limits."""
    items: list[tuple[tuple[bytes, bytes], bytes]] = []
    size = 0
    for r in records:
        raw = r.source
        if replaced:
            raw = replaced.get(id(r), raw)
        if items and (size + len(raw) > MAX_REQUEST_BYTES or len(items) >= MAX_REQUEST_SPANS):
            yield _encode(items), len(items)
            items, size = [], 0
        items.append((r.origin, raw))
        size += len(raw) + 8
    if items:
        yield _encode(items), len(items)
