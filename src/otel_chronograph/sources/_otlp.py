"""OTLP as a source: protobuf messages (the gateway, ``chronograph exec``'s receiver) and OTLP JSON
(the Collector ``file`` exporter, OTLP JSON documents, Jaeger v2 ``/api/v3/traces``) -> span records.

Both encodings map to the same record the SDK source gives, so every source derives the same lap:
OTLP span kinds are shifted by one against the API's ``SpanKind``; a sequence attribute becomes a tuple
(as the SDK stores it); the parent's remoteness comes from ``flags`` when the sender set it.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from opentelemetry.trace import SpanKind

from ..engine._records import EMPTY, EventRecord, SpanRecord

__all__ = ["OTLPError", "records_from_json", "records_from_proto", "value_from_json", "value_from_proto"]

# OTLP SpanKind: 0 unspecified, 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
_KINDS = (SpanKind.INTERNAL, SpanKind.INTERNAL, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER,
          SpanKind.CONSUMER)
_KIND_NAMES = {"SPAN_KIND_" + k.name: k for k in SpanKind} | {"SPAN_KIND_UNSPECIFIED": SpanKind.INTERNAL}
_HAS_IS_REMOTE = 0x100
_IS_REMOTE = 0x200
_STATUS_ERROR = 2


class OTLPError(ValueError):
    """Input that is not OTLP trace data; the message says what is wrong, in the user's terms."""


def _kind(value: int) -> SpanKind:
    return _KINDS[value] if 0 <= value < len(_KINDS) else SpanKind.INTERNAL


def _remote(flags: int) -> bool | None:
    return bool(flags & _IS_REMOTE) if flags & _HAS_IS_REMOTE else None


# -- protobuf -------------------------------------------------------------------------------------


def value_from_proto(v: Any) -> Any:
    """An ``AnyValue`` message as the Python value the SDK would hold."""
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return tuple(value_from_proto(x) for x in v.array_value.values)
    if which == "kvlist_value":
        return {kv.key: value_from_proto(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, which)


def _attrs_proto(kvs: Iterable[Any]) -> dict[str, Any]:
    return {kv.key: value_from_proto(kv.value) for kv in kvs}


def _id(raw: bytes, what: str, size: int) -> int:
    if len(raw) != size:
        raise OTLPError(f"{what} must be {size} bytes, got {len(raw)}")
    return int.from_bytes(raw, "big")


def records_from_proto(resource_spans: Iterable[Any]) -> Iterator[SpanRecord]:
    """Records of ``ResourceSpans`` messages (``ExportTraceServiceRequest.resource_spans`` or
    ``TracesData.resource_spans``); ``source`` is the protobuf ``Span``. Raises :class:`OTLPError`."""
    for rs in resource_spans:
        resource = _attrs_proto(rs.resource.attributes) if rs.HasField("resource") else {}
        for ss in rs.scope_spans:
            for s in ss.spans:
                trace_id = _id(s.trace_id, "trace_id", 16)
                span_id = _id(s.span_id, "span_id", 8)
                parent = _id(s.parent_span_id, "parent_span_id", 8) if s.parent_span_id else None
                error = s.status.code == _STATUS_ERROR
                events = [EventRecord(e.name, e.time_unix_nano, _attrs_proto(e.attributes)) for e in s.events]
                start = s.start_time_unix_nano
                yield SpanRecord(trace_id, span_id, parent, s.name, _kind(s.kind), start,
                                 s.end_time_unix_nano or start, _attrs_proto(s.attributes) or EMPTY, events,
                                 error, s.status.message if error and s.status.message else None, resource,
                                 _remote(s.flags), s)


# -- JSON -----------------------------------------------------------------------------------------


def value_from_json(v: Mapping[str, Any]) -> Any:
    """An OTLP JSON ``AnyValue`` (``{"stringValue": ...}``; 64-bit ints arrive as strings)."""
    if not isinstance(v, Mapping):
        raise OTLPError(f"attribute value must be an object, got {type(v).__name__}")
    for key, val in v.items():
        if key == "stringValue":
            return str(val)
        if key == "intValue":
            return int(val)
        if key == "boolValue":
            return bool(val)
        if key == "doubleValue":
            return float(val)
        if key == "arrayValue":
            return tuple(value_from_json(x) for x in (val or {}).get("values") or ())
        if key == "kvlistValue":
            return _attrs_json((val or {}).get("values"))
        if key == "bytesValue":
            return base64.b64decode(val)
    return None


def _attrs_json(kvs: Any) -> dict[str, Any]:
    if not kvs:
        return {}
    if not isinstance(kvs, list):
        raise OTLPError("attributes must be a list of {key, value}")
    out: dict[str, Any] = {}
    for kv in kvs:
        if not isinstance(kv, Mapping) or "key" not in kv:
            raise OTLPError("attribute without a key")
        out[str(kv["key"])] = value_from_json(kv.get("value") or {})
    return out


def _json_id(text: Any, what: str, size: int) -> int:
    """OTLP JSON ids are hex; some encoders (protobuf's own JSON) write base64: accept both."""
    if not isinstance(text, str):
        raise OTLPError(f"{what} must be a string")
    if len(text) == size * 2:
        try:
            return int(text, 16)
        except ValueError:
            pass
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise OTLPError(f"{what} is neither {size * 2} hex digits nor base64: {text[:40]!r}") from None
    if len(raw) != size:
        raise OTLPError(f"{what} must be {size} bytes, got {len(raw)}")
    return int.from_bytes(raw, "big")


def _json_kind(value: Any) -> SpanKind:
    if isinstance(value, str):
        return _KIND_NAMES.get(value, SpanKind.INTERNAL)
    return _kind(int(value or 0))


def _json_status(status: Any) -> tuple[bool, str | None]:
    if not status:
        return False, None
    code = status.get("code", 0)
    error = code == _STATUS_ERROR or code == "STATUS_CODE_ERROR"
    message = status.get("message") if error else None
    return error, (str(message) if message else None)


def _spans_of(resource_spans: Any) -> Iterator[tuple[Mapping[str, Any], Mapping[str, Any]]]:
    if not isinstance(resource_spans, list):
        raise OTLPError("resourceSpans must be a list")
    for rs in resource_spans:
        if not isinstance(rs, Mapping):
            raise OTLPError("resourceSpans items must be objects")
        resource = _attrs_json((rs.get("resource") or {}).get("attributes"))
        for ss in rs.get("scopeSpans") or rs.get("instrumentationLibrarySpans") or ():
            for span in (ss or {}).get("spans") or ():
                if not isinstance(span, Mapping):
                    raise OTLPError("spans items must be objects")
                yield resource, span


def resource_spans_of(doc: Any) -> Any:
    """The ``resourceSpans`` list of a TracesData / export request / Jaeger v3 response document."""
    if not isinstance(doc, Mapping):
        raise OTLPError(f"expected a JSON object, got {type(doc).__name__}")
    if "resourceSpans" in doc:
        return doc["resourceSpans"]
    result = doc.get("result")
    if isinstance(result, Mapping) and "resourceSpans" in result:  # Jaeger v2 /api/v3/traces
        return result["resourceSpans"]
    if "error" in doc and isinstance(doc["error"], Mapping):
        raise OTLPError(f"an error response, not traces: {str(doc['error'].get('message'))[:200]}")
    raise OTLPError("no resourceSpans: not OTLP JSON trace data (keys: "
                    + ", ".join(sorted(map(str, doc))[:8]) + ")")


def records_from_json(doc: Any) -> list[SpanRecord]:
    """Records of one OTLP JSON document (a whole document is checked before any record is returned,
    so a malformed line contributes nothing). Raises :class:`OTLPError`."""
    out: list[SpanRecord] = []
    resources: dict[int, Mapping[str, Any]] = {}
    try:
        for resource, s in _spans_of(resource_spans_of(doc)):
            res = resources.setdefault(id(resource), resource)
            trace_id = _json_id(s.get("traceId"), "traceId", 16)
            span_id = _json_id(s.get("spanId"), "spanId", 8)
            parent_text = s.get("parentSpanId")
            parent = _json_id(parent_text, "parentSpanId", 8) if parent_text else None
            start = int(s.get("startTimeUnixNano") or 0)
            end = int(s.get("endTimeUnixNano") or 0) or start
            error, message = _json_status(s.get("status"))
            events = [EventRecord(str(e.get("name", "")), int(e.get("timeUnixNano") or 0),
                                  _attrs_json(e.get("attributes"))) for e in s.get("events") or ()]
            out.append(SpanRecord(trace_id, span_id, parent, str(s.get("name", "")),
                                  _json_kind(s.get("kind", 0)), start, end,
                                  _attrs_json(s.get("attributes")) or EMPTY, events, error, message, res,
                                  _remote(int(s.get("flags") or 0)), s))
    except OTLPError:
        raise
    except (TypeError, ValueError, AttributeError, KeyError) as exc:
        raise OTLPError(f"malformed span: {exc}") from None
    return out
