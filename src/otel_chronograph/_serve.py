"""Serving an ASGI app with uvicorn from a daemon thread (the recorder API inside an application, the
gateway's OTLP/HTTP receiver): start, wait until it accepts connections, stop within a timeout."""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["EmbeddedServer", "serve_app_in_thread"]


class EmbeddedServer:
    """An ASGI app served by uvicorn from a daemon thread."""

    def __init__(self, server: Any, thread: threading.Thread, host: str, port: int) -> None:
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self, timeout_s: float = 5.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout_s)


def serve_app_in_thread(app: Any, host: str, port: int, name: str, timeout_s: float = 10.0,
                        **options: Any) -> EmbeddedServer:
    """Start serving ``app`` and return once it accepts connections (``port=0``: any free port).
    Raises RuntimeError when it cannot listen (address in use), TimeoutError when it is too slow."""
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                            lifespan="off", **options)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError(f"{name}: cannot listen on {host}:{port}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise TimeoutError(f"{name} did not start on {host}:{port} in {timeout_s}s")
        thread.join(0.01)
    bound = port
    for s in server.servers:
        for sock in s.sockets:
            bound = sock.getsockname()[1]
    return EmbeddedServer(server, thread, host, bound)
