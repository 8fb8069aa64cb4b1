"""Decoding an OTLP/HTTP (or gRPC) trace export request, shared by every receiver (the gateway,
``chronograph exec``'s embedded receiver): size limit, gzip, protobuf or JSON body -> the protobuf
``ExportTraceServiceRequest``, so spans can be forwarded as the original messages.

Errors are :class:`OTLPError` with a reason fit for a 400 / INVALID_ARGUMENT answer; never a traceback.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

from ._otlp import OTLPError

__all__ = ["MAX_REQUEST_BYTES", "decode_export_request", "export_response"]

MAX_REQUEST_BYTES = 64 * 1024 * 1024  # decompressed; the Collector's default max_request_body_size is 20 MiB

_ID_FIELDS = {"traceId": 16, "spanId": 8, "parentSpanId": 8}


def _gunzip(body: bytes, limit: int) -> bytes:
    decompressor = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = decompressor.decompress(body, limit + 1)
    except zlib.error as exc:
        raise OTLPError(f"body is not valid gzip: {exc}") from None
    if len(out) > limit:
        raise OTLPError(f"decompressed body larger than {limit} bytes")
    return out


def _hex_ids_to_base64(node: Any) -> None:
    """OTLP JSON writes ids as hex; protobuf's JSON mapping wants base64 for bytes fields."""
    if isinstance(node, dict):
        for key, value in node.items():
            size = _ID_FIELDS.get(key)
            if size is not None and isinstance(value, str) and value:
                if len(value) != size * 2:
                    raise OTLPError(f"{key} must be {size * 2} hex digits, got {len(value)} characters")
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise OTLPError(f"{key} is not hex: {value[:40]!r}") from None
            else:
                _hex_ids_to_base64(value)
    elif isinstance(node, list):
        for item in node:
            _hex_ids_to_base64(item)


def decode_export_request(body: bytes, content_type: str | None, content_encoding: str | None = None,
                          limit: int = MAX_REQUEST_BYTES) -> Any:
    """The ``ExportTraceServiceRequest`` in an OTLP/HTTP body. Raises :class:`OTLPError`."""
    from google.protobuf import json_format
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    encoding = (content_encoding or "").strip().lower()
    if encoding == "gzip":
        body = _gunzip(body, limit)
    elif encoding not in ("", "identity"):
        raise OTLPError(f"unsupported Content-Encoding {encoding[:40]!r} (gzip or none)")
    if len(body) > limit:
        raise OTLPError(f"body larger than {limit} bytes")
    kind = (content_type or "").split(";")[0].strip().lower()
    message = ExportTraceServiceRequest()
    if kind in ("application/x-protobuf", "application/protobuf"):
        try:
            message.ParseFromString(body)
        except (DecodeError, ValueError) as exc:
            raise OTLPError(f"body is not an OTLP protobuf ExportTraceServiceRequest: {exc}") from None
        return message
    if kind == "application/json":
        try:
            doc = json.loads(body)
        except ValueError as exc:
            raise OTLPError(f"body is not JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise OTLPError("body must be a JSON object with resourceSpans")
        _hex_ids_to_base64(doc)
        try:
            json_format.ParseDict(doc, message, ignore_unknown_fields=True)
        except (json_format.ParseError, ValueError, TypeError) as exc:
            raise OTLPError(f"body is not an OTLP JSON ExportTraceServiceRequest: {exc}") from None
        return message
    raise OTLPError(f"unsupported Content-Type {kind[:60]!r}: application/x-protobuf or application/json")


def export_response(content_type: str | None, rejected_spans: int = 0, message: str = ""
                    ) -> tuple[bytes, str]:
    """(body, content type) of an ``ExportTraceServiceResponse`` in the request's encoding."""
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    response = ExportTraceServiceResponse()
    if rejected_spans or message:
        response.partial_success.rejected_spans = rejected_spans
        response.partial_success.error_message = message
    if (content_type or "").split(";")[0].strip().lower() == "application/json":
        return json_format.MessageToJson(response).encode(), "application/json"
    return response.SerializeToString(), "application/x-protobuf"
