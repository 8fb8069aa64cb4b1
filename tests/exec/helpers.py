"""Shared helpers for the exec tests: real ``chronograph exec`` / ``exec-server`` processes, /proc checks."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.core.helpers import wait_for as wait_until

BIN = Path(sys.executable).parent
CHRONOGRAPH = str(BIN / "chronograph")
PYTHON = sys.executable
HERE = Path(__file__).parent
KEYS = {
    "free-key-000000000000": {"customer": "cus_free", "tier": "free"},
    "pro-key-0000000000000": {"customer": "cus_pro", "tier": "pro"},
}
FREE = {"Authorization": "Bearer free-key-000000000000"}
PRO = {"Authorization": "Bearer pro-key-0000000000000"}


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without chronograph/OpenTelemetry settings that would change what is tested."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OTEL_", "CHRONOGRAPH_", "TRACEPARENT", "TRACESTATE", "BAGGAGE"))}
    env.update(OTEL_METRICS_EXPORTER="none", OTEL_LOGS_EXPORTER="none", NO_COLOR="1", **extra)
    return env


def write_config(path: Path, exec_section: Mapping[str, Any], **top: Any) -> Path:
    path.write_text(yaml.safe_dump({"chronograph": {"exec": dict(exec_section), **top}}))
    return path


def write_keys(path: Path, keys: Mapping[str, Any] = KEYS) -> Path:
    path.write_text(json.dumps(keys))
    return path


def run_exec(args: list[str], env: Mapping[str, str], timeout_s: float = 60.0,
             input_bytes: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([CHRONOGRAPH, "exec", *args], env=dict(env), capture_output=True, timeout=timeout_s,
                          input=input_bytes)


def last_json(stdout: bytes) -> dict[str, Any]:
    """The ``--json`` line: the last line of stdout."""
    doc: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return doc


class ServerProcess:
    def __init__(self, proc: subprocess.Popen[bytes], url: str, stderr: list[bytes]) -> None:
        self.proc = proc
        self.url = url
        self._stderr = stderr

    @property
    def stderr(self) -> str:
        return b"".join(self._stderr).decode(errors="replace")

    def stop(self) -> int:
        """SIGTERM (uvicorn shuts down gracefully, laps and outbox flushed) and wait."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@contextmanager
def exec_server(config: Path, keys: Path, env: Mapping[str, str] | None = None,
                extra_args: tuple[str, ...] = ()) -> Iterator[ServerProcess]:
    """``chronograph exec-server --config config --port 0``; yields once /healthz answers."""
    full_env = clean_env(CHRONOGRAPH_EXEC_KEYS=str(keys), **(dict(env) if env else {}))
    proc = subprocess.Popen([CHRONOGRAPH, "exec-server", "--config", str(config), "--port", "0", *extra_args],
                            env=full_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    chunks: list[bytes] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in iter(proc.stderr.readline, b""):
            chunks.append(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()

    def address() -> str | None:
        if proc.poll() is not None:
            reader.join(5)
            raise AssertionError(f"exec-server exited {proc.returncode}: {b''.join(chunks).decode()}")
        found = re.search(rb"on (http://127\.0\.0\.1:\d+)", b"".join(chunks))
        return found.group(1).decode() if found else None

    url = wait_until(address, 30, "the exec-server's address")
    server = ServerProcess(proc, url, chunks)
    try:
        wait_until(lambda: httpx.get(url + "/healthz", timeout=2).status_code == 200, 30, "/healthz")
        yield server
    finally:
        server.stop()
        reader.join(5)


def alive(pid: int) -> bool:
    """A process exists and is not a zombie (a killed process waits as a zombie until reaped)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")
