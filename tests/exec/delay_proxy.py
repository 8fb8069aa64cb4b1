"""A TCP proxy on 127.0.0.1 that holds every client-to-server chunk for ``delay_s``: a slow network in
front of a real exec-server, so smart routing has a real latency difference to measure."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


def _pump(src: socket.socket, dst: socket.socket, delay_s: float) -> None:
    try:
        while data := src.recv(65536):
            if delay_s:
                time.sleep(delay_s)  # the simulated network latency, not synchronisation
            dst.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)


class DelayProxy:
    def __init__(self, target: str, delay_s: float) -> None:
        host, port = target.removeprefix("http://").split(":")
        self.target = (host, int(port))
        self.delay_s = delay_s
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> DelayProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            threading.Thread(target=_pump, args=(client, upstream, self.delay_s), daemon=True).start()
            threading.Thread(target=_pump, args=(upstream, client, 0.0), daemon=True).start()
