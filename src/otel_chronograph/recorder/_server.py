"""The flight recorder's HTTP API (Starlette, ``server`` extra): standalone or inside the instrumented app.

``GET /api/v1/flight-recorder`` lists the newest records, ``GET /api/v1/flight-recorder/{id}`` returns one
(by request id or trace id) with its timeline, summary, history comparison and text rendering.
Binds 127.0.0.1 by default; when a token is configured (``CHRONOGRAPH_API_TOKEN``) the API wants
``Authorization: Bearer <token>``. Errors are JSON, never a traceback: malformed requests are 400/414
before any route runs; store reads and renderings run in worker threads (at most ``MAX_BUSY`` at once,
then 503 + Retry-After), so the event loop and ``/healthz`` stay responsive; a damaged database is 503.
"""

from __future__ import annotations

import hmac
import logging
import os
import sqlite3
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from .._serve import EmbeddedServer, serve_app_in_thread
from .._sqlite import describe
from .._version import __version__
from .._vocab import STATUSES
from ._record import FlightRecord
from ._render import record_document, summary_item, to_chrome_trace
from ._store import FlightStore

__all__ = ["TOKEN_ENV", "EmbeddedServer", "create_app", "openapi_document", "run_server", "serve_in_thread"]

TOKEN_ENV = "CHRONOGRAPH_API_TOKEN"
MAX_BUSY = 16  # flight-record requests in worker threads at once; more get 503 + Retry-After
MAX_N = 1000
MAX_PATH = 2048  # characters of a request path; longer is 414
MAX_QUERY = 4096  # bytes of a query string; longer is 414
MAX_ECHO = 200  # characters of a request value repeated in an error
_log = logging.getLogger("otel_chronograph.recorder")
_UNSET: Any = object()


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, "status": status, **extra}, status_code=status)


def _malformed(scope: Scope) -> JSONResponse | None:
    """What no route should see: text that is not UTF-8 (Starlette would raise decoding it), sizes
    beyond the limits above."""
    query: bytes = scope.get("query_string", b"")
    path: str = scope.get("path", "")
    if len(path) > MAX_PATH or len(query) > MAX_QUERY:
        return _error(414, f"request path or query too long (limits: {MAX_PATH} characters, {MAX_QUERY} "
                           "bytes)")
    try:
        query.decode("utf-8")
        path.encode("utf-8")
    except UnicodeError:
        return _error(400, "the path and the query string must be UTF-8")
    return None


class _Gate:
    """Outermost: malformed requests get a JSON 400/414, then ``/api/`` requests without the right
    bearer token a 401 (constant-time comparison)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            bad = _malformed(scope)
            if bad is not None:
                await bad(scope, receive, send)
                return
        if self.expected is not None and scope["type"] == "http" and scope["path"].startswith("/api/"):
            given = b""
            for name, value in scope.get("headers", ()):
                if name == b"authorization":
                    given = value
                    break
            if not hmac.compare_digest(given, self.expected):
                response = _error(401, "missing or wrong bearer token")
                response.headers["WWW-Authenticate"] = 'Bearer realm="chronograph"'
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _parse_query(request: Request) -> tuple[int, str | None, str | None] | JSONResponse:
    try:
        q = request.query_params
    except UnicodeDecodeError:  # a query string that is not UTF-8: the client's error, not a 500
        return _error(400, "the query string is not UTF-8")
    raw_n = q.get("n", "10")
    # Length first: int() of thousands of digits raises (and costs), it never answers 400 by itself.
    if len(raw_n) > 6 or not raw_n.isascii() or not raw_n.isdigit() or not 1 <= int(raw_n) <= MAX_N:
        return _error(400, f"n must be an integer from 1 to {MAX_N}", parameter="n")
    status = q.get("status")
    if status is not None and status not in STATUSES:
        return _error(400, "status must be one of GREEN, YELLOW, RED", parameter="status")
    command = q.get("command") or None
    return int(raw_n), command, status


def create_app(store: FlightStore, token: str | None = _UNSET) -> Starlette:
    """The Starlette app serving ``store``. ``token`` defaults to ``$CHRONOGRAPH_API_TOKEN`` (unset: open)."""
    if token is _UNSET:
        token = os.environ.get(TOKEN_ENV) or None

    async def healthz(request: Request) -> Response:
        problem = await run_in_threadpool(store.check)
        if problem is not None:  # the truth: a corrupted or vanished database is not healthy
            return JSONResponse({"status": "error", "reason": problem, "version": __version__,
                                 "persistent": store.persistent}, status_code=503)
        return JSONResponse({"status": "ok", "version": __version__, "persistent": store.persistent})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(secured=token is not None))

    busy = [0]

    async def offload(work: Callable[[], Response]) -> Response:
        """Store reads and renderings run in worker threads, never on the event loop (so /healthz and
        the other requests stay responsive); past MAX_BUSY at once the API says so instead of queueing.
        A database that cannot be read is 503 with the reason (the health check says the same)."""
        if busy[0] >= MAX_BUSY:
            response = _error(503, "busy: too many flight-record requests in progress")
            response.headers["Retry-After"] = "1"
            return response
        busy[0] += 1
        try:
            return await run_in_threadpool(work)
        except sqlite3.Error as exc:
            return _error(503, f"the flight recorder database cannot be read: {describe(exc)}")
        finally:
            busy[0] -= 1

    async def list_records(request: Request) -> Response:
        parsed = _parse_query(request)
        if isinstance(parsed, JSONResponse):
            return parsed
        n, command, status = parsed

        def work() -> Response:
            records = store.recent(n, command, status)
            return JSONResponse({"count": len(records), "records": [summary_item(r) for r in records]})

        return await offload(work)

    def _one(request: Request, render: Callable[[FlightRecord], Any]) -> Callable[[], Response]:
        ident = request.path_params["id"]

        def work() -> Response:
            record = store.get(ident)
            if record is None:
                return _error(404, "no flight record with that request id or trace id", id=ident[:MAX_ECHO])
            return JSONResponse(render(record))

        return work

    async def get_record(request: Request) -> Response:
        return await offload(_one(request, lambda r: record_document(r, store.compare(r))))

    async def chrome_trace(request: Request) -> Response:
        return await offload(_one(request, to_chrome_trace))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        response = _error(exc.status_code, str(exc.detail))
        response.headers.update(exc.headers or {})
        return response

    async def server_error(request: Request, exc: Exception) -> Response:
        path = str(request.scope.get("path", ""))[:MAX_ECHO]
        _log.error("flight recorder API: %s %s failed", request.scope.get("method"), path, exc_info=exc)
        return _error(500, "internal error")

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/api/v1/flight-recorder", list_records, methods=["GET"]),
        Route("/api/v1/flight-recorder/{id}", get_record, methods=["GET"]),
        Route("/api/v1/flight-recorder/{id}/chrome-trace", chrome_trace, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(_Gate, token=token)],
        exception_handlers={HTTPException: http_error, Exception: server_error},
    )
    app.state.store = store
    return app


# -- OpenAPI ------------------------------------------------------------------------------------

_ERROR = {"type": "object", "required": ["error", "status"],
          "properties": {"error": {"type": "string"}, "status": {"type": "integer"}}}
_NUM = {"type": "number"}
_SECTORS = {"type": "object", "additionalProperties": _NUM}
_EVENT = {
    "type": "object", "required": ["timestamp", "elapsed_ms", "stage", "details"],
    "properties": {"timestamp": {"type": "string"}, "elapsed_ms": _NUM, "stage": {"type": "string"},
                   "kind": {"type": "string"}, "sector": {"type": ["string", "null"]},
                   "details": {"type": "object"}},
}
_STATUS = {"type": "string", "enum": list(STATUSES)}
_ITEM = {
    "type": "object",
    "required": ["id", "trace_id", "command", "timestamp", "lap_ms", "status", "error", "cost", "sectors"],
    "properties": {
        "id": {"type": "string"}, "trace_id": {"type": "string"}, "command": {"type": "string"},
        "conversation_id": {"type": ["string", "null"]}, "timestamp": {"type": "string"},
        "timestamp_ms": {"type": "integer"}, "lap_ms": _NUM, "status": _STATUS,
        "error": {"type": "boolean"}, "cost": {"type": "string"}, "sectors": _SECTORS,
    },
}
_RECORD = {
    "type": "object",
    "required": ["id", "trace_id", "conversation_id", "timestamp", "events", "summary", "sectors",
                 "status", "cost", "anomaly", "text"],
    "properties": {
        **_ITEM["properties"],  # type: ignore[dict-item]
        "events": {"type": "array", "items": _EVENT},
        "summary": {"type": "object", "required": ["total_ms", "breakdown", "other"],
                    "properties": {"total_ms": _NUM, "breakdown": {"type": "array"},
                                   "other": {"type": "object"}}},
        "anomaly": {"type": "boolean"},
        "history": {"type": "object", "properties": {"count": {"type": "integer"}, "median_ms": _NUM,
                                                     "p95_ms": _NUM, "ratio": _NUM, "factor": _NUM,
                                                     "anomaly": {"type": "boolean"}}},
        "text": {"type": "string"},
    },
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document(secured: bool = False) -> dict[str, Any]:
    """The OpenAPI 3.1 description of the API (served at ``/openapi.json``)."""
    errors = {"414": _json(_ERROR, "Path or query string too long"),
              "503": _json(_ERROR, "Busy (see Retry-After) or the database cannot be read")}
    if secured:
        errors["401"] = _json(_ERROR, "Missing or wrong bearer token")
    id_param = {"name": "id", "in": "path", "required": True,
                "description": "Request id (req_<16 hex>) or trace id (32 hex)",
                "schema": {"type": "string", "minLength": 1}}
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "otel-chronograph flight recorder", "version": __version__},
        "paths": {
            "/healthz": {"get": {"operationId": "healthz", "summary": "Liveness",
                                 "security": [],
                                 "responses": {"200": _json({"type": "object"}, "Up"),
                                               "503": _json({"type": "object"},
                                                            "The database cannot be read")}}},
            "/api/v1/flight-recorder": {"get": {
                "operationId": "listFlightRecords", "summary": "Newest flight records first",
                "parameters": [
                    {"name": "n", "in": "query", "required": False,
                     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_N, "default": 10}},
                    {"name": "command", "in": "query", "required": False, "schema": {"type": "string"}},
                    {"name": "status", "in": "query", "required": False, "schema": _STATUS},
                ],
                "responses": {
                    "200": _json({"type": "object", "required": ["count", "records"],
                                  "properties": {"count": {"type": "integer"},
                                                 "records": {"type": "array", "items": _ITEM}}},
                                 "Records"),
                    "400": _json(_ERROR, "Bad query parameter or text that is not UTF-8"), **errors,
                },
            }},
            "/api/v1/flight-recorder/{id}": {"get": {
                "operationId": "getFlightRecord", "summary": "One flight record with its timeline",
                "parameters": [id_param],
                "responses": {"200": _json(_RECORD, "The record"),
                              "404": _json(_ERROR, "Unknown id"), **errors},
            }},
            "/api/v1/flight-recorder/{id}/chrome-trace": {"get": {
                "operationId": "getChromeTrace", "summary": "The lap in Chrome trace event format",
                "parameters": [id_param],
                "responses": {"200": _json({"type": "object", "required": ["traceEvents"],
                                            "properties": {"traceEvents": {"type": "array"}}},
                                           "Trace events (open in Perfetto)"),
                              "404": _json(_ERROR, "Unknown id"), **errors},
            }},
        },
    }
    if secured:
        doc["components"] = {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}}
        doc["security"] = [{"bearer": []}]
    return doc


# -- running --------------------------------------------------------------------------------------


def run_server(store: FlightStore, host: str = "127.0.0.1", port: int = 8765, token: str | None = _UNSET,
               log_level: str = "warning") -> None:
    """Serve in the foreground until interrupted (``chronograph serve``)."""
    uvicorn.run(create_app(store, token), host=host, port=port, log_level=log_level, access_log=False)


def serve_in_thread(store: FlightStore, host: str = "127.0.0.1", port: int = 8765,
                    token: str | None = _UNSET, timeout_s: float = 10.0) -> EmbeddedServer:
    """Start the API in a daemon thread and return once it accepts connections (``port=0``: any free)."""
    try:
        return serve_app_in_thread(create_app(store, token), host, port, "chronograph-recorder-api",
                                   timeout_s)
    except RuntimeError:
        raise RuntimeError(f"flight recorder API could not start on {host}:{port}") from None
    except TimeoutError:
        raise TimeoutError(f"flight recorder API did not start on {host}:{port} in {timeout_s}s") from None
