"""The embedded OTLP/HTTP trace receiver of ``chronograph exec``: HTTP plumbing only.

Standard library (``http.server``), so ``chronograph exec`` pays no web-framework import on every run.
It binds 127.0.0.1 on a free port under a random path prefix (other local users cannot inject spans
into the lap), decodes bodies with the shared :func:`~otel_chronograph.sources.decode_export_request`
(protobuf or JSON, gzip, size limit) and hands each ``ExportTraceServiceRequest`` to a callback. Bad
input gets 400 with the reason, never a traceback; it counts requests in flight so the lap can wait
for a child's last export.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..sources import OTLPError, decode_export_request, export_response
from ..sources._otlp_request import MAX_REQUEST_BYTES

__all__ = ["Receiver"]

OnRequest = Callable[[Any], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: an exporter's session reuses its connection
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # no access log on the child's stderr
        pass

    def _reply(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._reply(405, b"POST OTLP trace data to /v1/traces\n")

    def do_POST(self) -> None:
        receiver = self.server.receiver
        if self.path.split("?", 1)[0] != receiver.path:
            self._reply(404, b"not found: this receiver takes traces only\n")
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self.close_connection = True
            self._reply(411, b"Content-Length required\n")
            return
        length = int(length_text)
        if length > MAX_REQUEST_BYTES:
            self.close_connection = True
            self._reply(413, f"body larger than {MAX_REQUEST_BYTES} bytes\n".encode())
            return
        receiver.enter()
        try:
            body = self.rfile.read(length)
            content_type = self.headers.get("Content-Type")
            try:
                message = decode_export_request(body, content_type, self.headers.get("Content-Encoding"))
                receiver.on_request(message)
            except OTLPError as exc:
                receiver.rejected += 1
                self._reply(400, f"{exc}\n".encode())
                return
            except Exception:  # the callback failed: the child is told, the lap goes on
                receiver.rejected += 1
                self._reply(500, b"internal error\n")
                return
            payload, kind = export_response(content_type)
            self._reply(200, payload, kind)
        finally:
            receiver.leave()


class Receiver:
    """Serves in a daemon thread from construction until :meth:`stop`; ``url`` is the child's
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` (the exporter appends ``/v1/traces``)."""

    def __init__(self, on_request: OnRequest) -> None:
        self.on_request = on_request
        self.path = f"/{secrets.token_urlsafe(12)}/v1/traces"
        self.rejected = 0
        self._in_flight = 0
        self._idle = threading.Condition()
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 1.0},
                                        name="chronograph-exec-receiver", daemon=True)
        self._thread.start()

    @property
    def _address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self._address
        return f"http://{host}:{port}{self.path.removesuffix('/v1/traces')}"

    def enter(self) -> None:
        with self._idle:
            self._in_flight += 1

    def leave(self) -> None:
        with self._idle:
            self._in_flight -= 1
            self._idle.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no request is being handled (a child's last export), at most ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._idle:
            while self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def stop(self) -> None:
        """Stop serving now: a connection wakes the serving loop instead of waiting out its poll."""
        stopper = threading.Thread(target=self._server.shutdown, daemon=True)
        stopper.start()
        with contextlib.suppress(OSError):
            socket.create_connection(self._address, timeout=1.0).close()
        stopper.join(5.0)
        self._server.server_close()
