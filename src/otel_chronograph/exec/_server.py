"""``chronograph exec-server``: allowlisted named commands over HTTP, by tier (Starlette + uvicorn).

``POST /api/v1/exec?format=v1|v2|v3`` with ``{"command": NAME, "args": [...]}`` and
``Authorization: Bearer KEY``. Checks in this order, each with a JSON error and never a traceback:
401 (no or wrong key), 400/413 (not JSON, too large), 422 (bad shape, bad ``format``), 403 (unknown
command or not for the key's tier), 422 (an argument its rule refuses), 429 + ``Retry-After`` (a
limit). Only then a run starts: one lap (SERVER span continuing the request's ``traceparent``) with
sectors ``spawn``, ``run``, ``output``, billed through the outbox like any lap, answered 200 even when
the command failed or timed out. Every answer says whether a run started (``Chronograph-Exec-Started``),
so a client can fall back elsewhere without ever running a command twice.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import propagate
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .._config import ChronographConfig, ConfigError, ExecCommand
from .._lap import response
from .._version import __version__
from ._carriers import inject_environment
from ._keys import Identity, KeyRing
from ._limits import Limits
from ._openapi import openapi_document
from ._routing import STARTED_HEADER
from ._runner import Run
from ._session import Session
from ._signals import signal_name
from ._template import ArgumentError, fill

__all__ = ["create_app", "run_server"]

_log = logging.getLogger("otel_chronograph.exec")
_FORMATS = ("v1", "v2", "v3")
MAX_COMMAND_NAME = 256
MAX_ARGS = 256


class _AsciiJSON(JSONResponse):
    """Errors may quote what the client sent (a lone surrogate cannot be encoded as UTF-8): escaped."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def _error(status: int, message: str, started: bool = False, **extra: Any) -> JSONResponse:
    return _AsciiJSON({"error": message, "status": status, **extra}, status_code=status,
                      headers={STARTED_HEADER: "true" if started else "false"})


class _Refused(Exception):
    def __init__(self, answer: JSONResponse) -> None:
        self.answer = answer


def _identity(request: Request, keys: KeyRing) -> Identity:
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    ident = keys.lookup(given.strip()) if scheme.lower() == "bearer" and given.strip() else None
    if ident is None:
        answer = _error(401, "missing or wrong API key (Authorization: Bearer KEY)")
        answer.headers["WWW-Authenticate"] = 'Bearer realm="chronograph-exec"'
        raise _Refused(answer)
    return ident


async def _body(request: Request, limit: int) -> tuple[str, list[Any]]:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _Refused(_error(413, f"request body larger than {limit} bytes"))
    raw = bytearray()
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > limit:
            raise _Refused(_error(413, f"request body larger than {limit} bytes"))
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise _Refused(_error(400, 'body is not JSON: send {"command": NAME, "args": [...]}')) from None
    if not isinstance(doc, dict):
        raise _Refused(_error(422, 'body must be a JSON object {"command": NAME, "args": [...]}'))
    unknown = sorted(set(doc) - {"command", "args"})
    if unknown:
        raise _Refused(_error(422, f"unknown field(s): {', '.join(repr(k[:40]) for k in unknown[:5])}"))
    command, args = doc.get("command"), doc.get("args", [])
    if not isinstance(command, str) or not 0 < len(command) <= MAX_COMMAND_NAME:
        raise _Refused(_error(422, f"command must be a name of 1 to {MAX_COMMAND_NAME} characters"))
    if not isinstance(args, list) or len(args) > MAX_ARGS:
        raise _Refused(_error(422, f"args must be a list of at most {MAX_ARGS} strings"))
    return command, args


def _outcome(run: Run) -> tuple[int, str | None]:
    """(exit code as a shell reports it, error description or None) for the lap span."""
    signo = run.signal_number
    code = run.exit_code if signo is None else 128 + signo
    if run.timed_out:
        return code if code is not None else 128, f"timed out after {run.timeout_s:g}s"
    if signo is not None:
        return 128 + signo, f"killed by {signal_name(signo)}"
    assert code is not None
    return code, (f"exited with status {code}" if code else None)


class ExecService:
    """Everything the endpoint needs; one per server process."""

    def __init__(self, config: ChronographConfig, keys: KeyRing, session: Session,
                 environ: dict[str, str] | None = None) -> None:
        self.config = config
        self.exec = config.exec
        self.keys = keys
        self.session = session
        self.limits = Limits(self.exec.tiers, self.exec.max_running)
        env = os.environ if environ is None else environ
        self.base_env = {name: env[name] for name in self.exec.pass_env if name in env}
        self.runs = 0

    def _command(self, name: str, ident: Identity) -> ExecCommand:
        command = self.exec.commands.get(name)
        if command is None or ident.tier not in command.tiers:
            raise _Refused(_error(403, f"command {name[:64]!r} is unknown or not allowed for the "
                                  f"{ident.tier} tier"))
        return command

    async def handle(self, request: Request) -> Response:
        try:
            ident = _identity(request, self.keys)
            fmt = request.query_params.get("format", "v3")
            if fmt not in _FORMATS:
                raise _Refused(_error(422, "format must be v1, v2 or v3"))
            name, args = await _body(request, self.exec.max_request_bytes)
            command = self._command(name, ident)
            try:
                argv = fill(command.argv, command.args, args)
            except ArgumentError as exc:
                raise _Refused(_error(422, str(exc))) from None
            refusal = self.limits.acquire(ident.key_id, ident.tier)
            if refusal is not None:
                answer = _error(429, refusal.reason, retry_after_s=refusal.retry_after_s)
                answer.headers["Retry-After"] = str(refusal.retry_after_s)
                raise _Refused(answer)
        except _Refused as refused:
            return refused.answer
        try:
            body = await self._run(request, name, command, argv, ident, fmt)
        finally:
            self.limits.release(ident.key_id)
        return JSONResponse(body, headers={STARTED_HEADER: "true"})

    async def _run(self, request: Request, name: str, command: ExecCommand, argv: list[str],
                   ident: Identity, fmt: str) -> dict[str, Any]:
        tier = self.exec.tiers[ident.tier]
        session = self.session
        token = otel_context.attach(propagate.extract(request.headers))
        try:
            with session.lap(name, ident.tier, ident.customer, SpanKind.SERVER,
                             {"chronograph.exec.key_id": ident.key_id}) as handle:
                run = Run(tier.output_cap_bytes, tier.timeout_s, self.exec.kill_grace_s)
                with session.sector("spawn"):
                    env = run.environment({**self.base_env, **command.env})
                    inject_environment(env, session.next_span_context(handle.span))
                    request.state.started = True
                    await run.start(argv, env)
                with session.sector("run"):
                    await run.wait()
                with session.sector("output"):
                    data = run.data()
                code, problem = _outcome(run)
                handle.span.set_attribute("process.exit.code", code)
                if run.timed_out:
                    handle.span.set_attribute("chronograph.exec.timed_out", True)
                if problem is not None:
                    handle.span.set_status(Status(StatusCode.ERROR, problem))
            self.runs += 1
            return response(data, handle.telemetry, fmt)  # type: ignore[arg-type]
        finally:
            otel_context.detach(token)


def create_app(service: ExecService) -> Starlette:
    async def run(request: Request) -> Response:
        return await service.handle(request)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": __version__, "running": service.limits.running})

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document())

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        answer = _error(exc.status_code, str(exc.detail))
        answer.headers.update(exc.headers or {})
        return answer

    async def server_error(request: Request, exc: Exception) -> Response:
        _log.error("exec-server: %s %s failed", request.method, request.url.path, exc_info=exc)
        return _error(500, "internal error", started=bool(getattr(request.state, "started", False)))

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/api/v1/exec", run, methods=["POST"]),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error, Exception: server_error})


def _stopped(signo: int, frame: FrameType | None) -> None:
    """uvicorn re-raises the signal that stopped it; by then the server has stopped: nothing to do."""


def listen(host: str, port: int) -> socket.socket:
    """The listening socket, bound before uvicorn starts so the real port (``--port 0``) can be told."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(2048)
    return sock


def run_server(config: ChronographConfig, host: str = "127.0.0.1", port: int = 8780,
               log_level: str = "warning", announce: Callable[[str], None] | None = None) -> None:
    """Serve in the foreground until interrupted; laps flushed (billing outbox, export) on the way out."""
    import uvicorn

    keys = KeyRing.from_environment(config.exec.tiers)
    sock = listen(host, port)
    session = Session(config, receive=False, service="chronograph-exec-server")
    try:
        service = ExecService(config, keys, session)
        bound = sock.getsockname()[1]
        if announce is not None:
            announce(f"chronograph exec-server on http://{host}:{bound} ({len(config.exec.commands)} "
                     f"command(s), {len(keys)} key(s))")
        # asyncio's loop, not uvloop: its subprocesses start with vfork; uvloop's fork of this (large)
        # process made spawning 3-4x slower (bench_exec: 22 vs 80 runs/s).
        server = uvicorn.Server(uvicorn.Config(create_app(service), log_level=log_level, access_log=False,
                                               lifespan="off", loop="asyncio"))
        # uvicorn stops gracefully on SIGINT/SIGTERM, then re-raises the signal with the handler it found:
        # with the default one the process would die before the laps are flushed below. This one returns.
        previous = {s: signal.signal(s, _stopped) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            server.run(sockets=[sock])
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
    finally:
        sock.close()
        session.close()
