"""Forwarding spans as the bytes they arrived in: export requests assembled from serialized spans, and
the annotated copy of a lap root.

A span received by the gateway is kept as its serialized protobuf (``GatewayRecord.source``). Export
requests are written directly in the wire format (``ExportTraceServiceRequest`` and ``TracesData`` are
the same bytes): spans are regrouped under their original resource and scope, never converted through
SDK objects or re-parsed. Only a lap root is parsed again, to add the ``chronograph.*`` attributes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from .._lap import Lap
from ..engine._derive import lap_attributes
from ._records import GatewayRecord, ld, varint

__all__ = ["Batch", "annotated_span", "batches", "set_any_value"]

MAX_REQUEST_BYTES = 3 * 1024 * 1024  # under gRPC's default 4 MiB receive limit, with room for headers
MAX_REQUEST_SPANS = 8192

Batch = tuple[bytes, int]  # (serialized ExportTraceServiceRequest, span count)

_DOUBLE = struct.Struct("<d")
_SMALL = 16384  # spans shorter than this (nearly all) get their field header from a table
_SPAN_PREFIX = [b"\x12" + varint(n) for n in range(_SMALL)]


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
        array.SetInParent()  # an empty array is still an array
        for item in value:
            set_any_value(array.values.add(), item)
    else:
        target.string_value = str(value)


_KEY_FIELDS: dict[str, bytes] = {}  # encoded "key" fields of the (few, recurring) chronograph.* keys


def _key_value(key: str, value: Any) -> bytes:
    """One serialized ``KeyValue`` (strings, bools, ints and floats written directly)."""
    if isinstance(value, str):
        any_value = ld(b"\x0a", value.encode())
    elif isinstance(value, bool):
        any_value = b"\x10\x01" if value else b"\x10\x00"
    elif isinstance(value, int) and -(2**63) <= value < 2**63:
        any_value = b"\x18" + varint(value & 0xFFFFFFFFFFFFFFFF)
    elif isinstance(value, float):
        any_value = b"\x21" + _DOUBLE.pack(value)
    else:
        from opentelemetry.proto.common.v1.common_pb2 import AnyValue

        message = AnyValue()
        set_any_value(message, value)
        any_value = message.SerializeToString()
    field = _KEY_FIELDS.get(key)
    if field is None:
        field = ld(b"\x0a", key.encode())
        if len(_KEY_FIELDS) < 4096:
            _KEY_FIELDS[key] = field
    return ld(b"\x4a", field + ld(b"\x12", any_value))


def annotated_span(raw: bytes, attributes: Mapping[str, Any]) -> bytes:
    """A copy of the serialized span with ``attributes`` set (replacing keys it already had).

    Repeated fields concatenate in the wire format, so the new ``KeyValue``s are appended to the
    span's bytes; only a span that already has ``chronograph.*`` keys is parsed to replace them."""
    extra = b"".join([_key_value(k, v) for k, v in attributes.items()])
    if b"chronograph." not in raw and all(k.startswith("chronograph.") for k in attributes):
        return raw + extra
    from opentelemetry.proto.trace.v1.trace_pb2 import Span

    span = Span.FromString(raw)
    existing = span.attributes
    if any(kv.key in attributes for kv in existing):
        kept = [kv for kv in existing if kv.key not in attributes]
        del existing[:]
        existing.extend(kept)
    out: bytes = span.SerializeToString()
    return out + extra


def annotate_root(record: GatewayRecord, lap: Lap) -> bytes:
    return annotated_span(record.source, lap_attributes(lap))


def _encode(groups: dict[bytes, dict[bytes, list[bytes]]]) -> bytes:
    out = []
    for resource, scopes in groups.items():
        body = [resource]
        body.extend(ld(b"\x12", scope + b"".join(spans)) for scope, spans in scopes.items())
        out.append(ld(b"\x0a", b"".join(body)))
    return b"".join(out)


def batches(records: Iterable[GatewayRecord], replaced: Mapping[int, bytes] | None = None
            ) -> Iterator[Batch]:
    """Export requests holding ``records`` (``replaced``: ``id(record)`` -> the bytes to send instead,
    for annotated roots), each under the size and span limits; spans regrouped under their resource
    and scope in one pass."""
    groups: dict[bytes, dict[bytes, list[bytes]]] = {}
    count = size = 0
    prefix, small = _SPAN_PREFIX, _SMALL
    for r in records:
        raw = r.source
        if replaced:
            raw = replaced.get(id(r), raw)
        n = len(raw)
        if count and (size + n > MAX_REQUEST_BYTES or count >= MAX_REQUEST_SPANS):
            yield _encode(groups), count
            groups, count, size = {}, 0, 0
        resource, scope = r.origin
        scopes = groups.get(resource)
        if scopes is None:
            scopes = groups[resource] = {}
        spans = scopes.get(scope)
        if spans is None:
            spans = scopes[scope] = []
        spans.append(prefix[n] if n < small else b"\x12" + varint(n))
        spans.append(raw)
        count += 1
        size += n + 8
    if count:
        yield _encode(groups), count
