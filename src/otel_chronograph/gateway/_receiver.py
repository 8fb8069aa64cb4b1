"""The OTLP receivers: gRPC (grpcio, ``TraceServiceServicer``) and HTTP (Starlette on uvicorn,
``POST /v1/traces`` with protobuf or JSON bodies, gzip).

Both hand the decoded ``ExportTraceServiceRequest`` to :meth:`Gateway.accept` and translate its answer
as the OTLP specification asks: malformed data is ``INVALID_ARGUMENT`` / 400 with the reason; a full
gateway is ``RESOURCE_EXHAUSTED`` with RetryInfo / 429 or 503 with ``Retry-After``, which senders (the
Collector's exporters, the SDK's) retry, so nothing is accepted and then dropped; a wrong or missing
bearer token (``CHRONOGRAPH_GATEWAY_TOKEN``) is ``UNAUTHENTICATED`` / 401. No answer carries a traceback.
"""

from __future__ import annotations

import hmac
import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from .._pipeline import log_once
from ..sources import OTLPError, decode_export_request, export_response
from ._config import GrpcProtocol, HttpProtocol

if TYPE_CHECKING:
    from .._serve import EmbeddedServer

__all__ = ["TOKEN_ENV", "GrpcReceiver", "HttpReceiver", "Refused", "create_http_app"]

_log = logging.getLogger("otel_chronograph.gateway")

TOKEN_ENV = "CHRONOGRAPH_GATEWAY_TOKEN"
# google.rpc.Code values used in Status bodies.
_INVALID_ARGUMENT = 3
_RESOURCE_EXHAUSTED = 8
_UNAVAILABLE = 14
_UNAUTHENTICATED = 16
_INTERNAL = 13

Accept = Callable[[Any], int]
Malformed = Callable[[], None]  # counts a request refused before it reached ``accept`` (not decodable)


class Refused(Exception):
    """The gateway cannot take this request now; the sender should retry after ``retry_after_s``.

    ``kind``: ``pending`` (pending traces at ``max_pending_traces``: RESOURCE_EXHAUSTED / 429), ``queue``
    (an exporter's sending queue is full: RESOURCE_EXHAUSTED / 503) or ``closing`` (shutting down:
    UNAVAILABLE / 503, so a load balancer sends it to another gateway).
    """

    def __init__(self, message: str, retry_after_s: float, kind: Literal["pending", "queue", "closing"]
                 ) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.kind = kind


def _retry_seconds(refused: Refused) -> int:
    return max(1, math.ceil(refused.retry_after_s))


def _token_ok(expected: bytes | None, given: str | bytes | None) -> bool:
    if expected is None:
        return True
    raw = given.encode() if isinstance(given, str) else (given or b"")
    return hmac.compare_digest(raw, expected)


def _expected(token: str | None) -> bytes | None:
    return f"Bearer {token}".encode() if token else None


# -- gRPC -----------------------------------------------------------------------------------------


def _retry_metadata(seconds: int, code: int, message: str) -> tuple[tuple[str, bytes], ...]:
    """RetryInfo both ways senders read it: inside ``grpc-status-details-bin`` (Go: the Collector) and
    as ``google.rpc.retryinfo-bin`` (the Python SDK)."""
    from google.protobuf.any_pb2 import Any as AnyMessage
    from google.rpc import error_details_pb2, status_pb2

    info = error_details_pb2.RetryInfo()
    info.retry_delay.seconds = seconds
    detail = AnyMessage()
    detail.Pack(info)
    status = status_pb2.Status(code=code, message=message, details=[detail])
    return (("grpc-status-details-bin", status.SerializeToString()),
            ("google.rpc.retryinfo-bin", info.SerializeToString()))


def _servicer(accept: Accept, malformed: Malformed, token: str | None) -> Any:
    import grpc
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
        ExportTraceServiceResponse,
    )

    expected = _expected(token)

    class TraceService(trace_service_pb2_grpc.TraceServiceServicer):
        """``Export`` gets the raw request bytes (see :func:`_handler`) so that a body that is not
        protobuf is INVALID_ARGUMENT with the reason, not grpcio's INTERNAL "Exception deserializing"."""

        def Export(self, request: bytes, context: Any) -> Any:
            if expected is not None:
                given = next((v for k, v in context.invocation_metadata() if k == "authorization"), None)
                if not _token_ok(expected, given):
                    context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or wrong bearer token")
            try:
                message = ExportTraceServiceRequest.FromString(request)
            except (DecodeError, ValueError) as exc:
                malformed()
                context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                              f"not an OTLP protobuf ExportTraceServiceRequest: {exc}")
            try:
                accept(message)
            except OTLPError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except Refused as exc:
                code = (grpc.StatusCode.UNAVAILABLE if exc.kind == "closing"
                        else grpc.StatusCode.RESOURCE_EXHAUSTED)
                context.set_trailing_metadata(_retry_metadata(_retry_seconds(exc), code.value[0], str(exc)))
                context.abort(code, str(exc))
            except Exception:
                log_once("grpc-accept", "chronograph gateway: internal error handling a gRPC export")
                context.abort(grpc.StatusCode.INTERNAL, "internal error in the gateway (logged there)")
            return ExportTraceServiceResponse()

    return TraceService()


def _handler(servicer: Any) -> Any:
    """The TraceService handler with raw request bytes (our own, error-reporting decode)."""
    import grpc
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    return grpc.method_handlers_generic_handler(
        "opentelemetry.proto.collector.trace.v1.TraceService",
        {"Export": grpc.unary_unary_rpc_method_handler(
            servicer.Export, request_deserializer=None,
            response_serializer=ExportTraceServiceResponse.SerializeToString)})


class GrpcReceiver:
    """OTLP/gRPC on ``protocol.endpoint``; ``port`` is the bound port (``:0`` picks a free one)."""

    def __init__(self, accept: Accept, malformed: Malformed, protocol: GrpcProtocol, token: str | None,
                 workers: int = 8) -> None:
        from concurrent.futures import ThreadPoolExecutor

        import grpc

        self.endpoint = protocol.endpoint
        self._server = grpc.server(
            ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chronograph-grpc"),
            options=[("grpc.max_receive_message_length", protocol.max_recv_msg_size_mib * 1024 * 1024),
                     ("grpc.max_concurrent_streams", protocol.max_concurrent_streams)],
            # Beyond this grpcio itself answers RESOURCE_EXHAUSTED without RetryInfo, which the Collector
            # does not retry: high, so that the gateway's own refusals (with RetryInfo) come first.
            maximum_concurrent_rpcs=128)
        self._server.add_generic_rpc_handlers((_handler(_servicer(accept, malformed, token)),))
        try:
            self.port = self._server.add_insecure_port(protocol.endpoint)
        except RuntimeError:
            self.port = 0
        if not self.port:
            raise RuntimeError(f"cannot listen for OTLP/gRPC on {protocol.endpoint} (address in use?)")
        self.host = protocol.endpoint.rpartition(":")[0]

    def start(self) -> None:
        self._server.start()

    def stop(self, grace_s: float) -> None:
        """Stop taking calls; calls in progress get ``grace_s`` to finish."""
        self._server.stop(grace_s).wait(grace_s + 1)


# -- HTTP -----------------------------------------------------------------------------------------


def _status_body(content_type: str | None, code: int, message: str) -> tuple[bytes, str]:
    """A ``google.rpc.Status`` in the request's encoding, as OTLP/HTTP error responses carry."""
    from google.rpc import status_pb2

    status = status_pb2.Status(code=code, message=message)
    if (content_type or "").split(";")[0].strip().lower() == "application/json":
        import json

        return json.dumps({"code": code, "message": message}).encode(), "application/json"
    return status.SerializeToString(), "application/x-protobuf"


def create_http_app(accept: Accept, malformed: Malformed, protocol: HttpProtocol, token: str | None) -> Any:
    """The Starlette app of the OTLP/HTTP receiver."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    expected = _expected(token)
    limit = protocol.max_request_body_size

    def error(content_type: str | None, status: int, code: int, message: str,
              headers: dict[str, str] | None = None) -> Response:
        body, media = _status_body(content_type, code, message)
        return Response(body, status_code=status, media_type=media, headers=headers)

    async def read_body(request: Request) -> bytes | None:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            return None
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def traces(request: Request) -> Response:
        ctype = request.headers.get("content-type")
        if not _token_ok(expected, request.headers.get("authorization")):
            return error(ctype, 401, _UNAUTHENTICATED, "missing or wrong bearer token",
                         {"WWW-Authenticate": 'Bearer realm="chronograph-gateway"'})
        body = await read_body(request)
        if body is None:
            return error(ctype, 413, _INVALID_ARGUMENT, f"body larger than {limit} bytes "
                         "(receivers.otlp.protocols.http.max_request_body_size)")
        try:
            message = decode_export_request(body, ctype, request.headers.get("content-encoding"), limit)
        except OTLPError as exc:
            malformed()
            return error(ctype, 400, _INVALID_ARGUMENT, str(exc))
        try:
            accept(message)
        except OTLPError as exc:
            return error(ctype, 400, _INVALID_ARGUMENT, str(exc))
        except Refused as exc:
            return error(ctype, 429 if exc.kind == "pending" else 503,
                         _UNAVAILABLE if exc.kind == "closing" else _RESOURCE_EXHAUSTED, str(exc),
                         {"Retry-After": str(_retry_seconds(exc))})
        except Exception:
            log_once("http-accept", "chronograph gateway: internal error handling an HTTP export")
            return error(ctype, 500, _INTERNAL, "internal error in the gateway (logged there)")
        reply, media = export_response(ctype)
        return Response(reply, media_type=media)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        message = ("use POST" if status == 405 else
                   f"not found: this receiver serves POST {protocol.traces_url_path} (traces only)")
        return error(request.headers.get("content-type"), status, _INVALID_ARGUMENT, message)

    async def server_error(request: Request, exc: Exception) -> Response:
        log_once("http-error", "chronograph gateway: internal error in the HTTP receiver")
        return error(request.headers.get("content-type"), 500, _INTERNAL, "internal error (logged)")

    return Starlette(routes=[Route(protocol.traces_url_path, traces, methods=["POST"])],
                     exception_handlers={404: not_found, 405: not_found, 500: server_error})


class HttpReceiver:
    """OTLP/HTTP served by uvicorn from a thread."""

    def __init__(self, accept: Accept, malformed: Malformed, protocol: HttpProtocol, token: str | None
                 ) -> None:
        self._app = create_http_app(accept, malformed, protocol, token)
        host, _, port = protocol.endpoint.rpartition(":")
        self.host = host.strip("[]") or "127.0.0.1"
        self._port = int(port)
        self._server: EmbeddedServer | None = None
        self.port = self._port

    def start(self) -> None:
        from .._serve import serve_app_in_thread

        try:
            self._server = serve_app_in_thread(self._app, self.host, self._port, "chronograph-gateway-http",
                                               timeout_graceful_shutdown=5)
        except RuntimeError:
            raise RuntimeError(f"cannot listen for OTLP/HTTP on {self.host}:{self._port} "
                               "(address in use?)") from None
        self.port = self._server.port

    def stop(self, grace_s: float) -> None:
        if self._server is not None:
            self._server.stop(grace_s + 1)
