"""Where ``chronograph exec`` runs a named command: here, or on an ``exec-server`` (``exec.mode``).

- ``local``: here. ``cloud``: the endpoint named ``cloud``. ``hybrid``: by tier through ``exec.routes``
  (free local, pro ``cloud``, enterprise ``dedicated`` by default).
- ``smart``: a tier routed ``local`` stays here; otherwise the healthy endpoint open to the tier with the
  lowest measured latency (median of three ``GET /healthz`` on one connection, probed in parallel and
  kept ``latency_ttl_s`` in a small cache file), and here when none is healthy or the chosen one fails
  to start the run.

"Failed to start" is decided strictly, so a command that did start remotely is never run twice: the
connection or the sending of the request failed, or the server answered with
``Chronograph-Exec-Started: false`` (every refusal of ``exec-server``: 401, 403, 422, 429, 503). Anything
else (no answer after the request was sent, a proxy's 502/504) is :class:`RemoteFailed`: reported,
never re-run.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from opentelemetry import propagate
from opentelemetry.trace import Span

from .._config import ExecConfig, ExecEndpoint
from ._local import finish
from ._signals import signal_number

if TYPE_CHECKING:  # imported when a remote endpoint is used (ssl alone costs ~10 ms of start-up)
    import http.client

__all__ = ["LOCAL", "STARTED_HEADER", "NotStarted", "RemoteFailed", "Route", "Router", "probe_latency",
           "run_remote"]

STARTED_HEADER = "Chronograph-Exec-Started"
TIMED_OUT = 124  # as timeout(1) reports a command it had to stop
_MAX_RESPONSE = 256 * 1024 * 1024
_PROBES = 3


class NotStarted(Exception):
    """The remote run certainly did not start (safe to run it elsewhere)."""


class RemoteFailed(Exception):
    """The remote run may have started: never run it again."""


@dataclass(frozen=True)
class Route:
    name: str  # "local" or an endpoint name
    endpoint: ExecEndpoint | None = None
    fallback: bool = False  # run here when the endpoint fails to start the run (smart)


LOCAL = Route("local")


def _connection(url: str, timeout_s: float) -> tuple[http.client.HTTPConnection, str]:
    import http.client

    parts = urlsplit(url)
    cls = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    return cls(parts.hostname or "", parts.port, timeout=timeout_s), parts.path.rstrip("/")


def probe_latency(url: str, timeout_s: float) -> float | None:
    """Median seconds of ``GET /healthz`` answered 200 (after connecting), or None when not healthy."""
    import http.client

    conn, prefix = _connection(url, timeout_s)
    times: list[float] = []
    try:
        conn.connect()
        for _ in range(_PROBES):
            start = time.perf_counter()
            conn.request("GET", prefix + "/healthz")
            answer = conn.getresponse()
            answer.read()
            if answer.status != 200:
                return None
            times.append(time.perf_counter() - start)
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    return statistics.median(times)


def _cache_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "otel-chronograph" / "exec-latency.json"


class Router:
    """Chooses a :class:`Route` per run; measured latencies are cached (file, ``latency_ttl_s``)."""

    def __init__(self, config: ExecConfig, probe: Callable[[str, float], float | None] = probe_latency,
                 cache_path: Path | None = None, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self._probe = probe
        self._cache_path = cache_path if cache_path is not None else _cache_path()
        self._clock = clock
        self.measured: dict[str, float | None] = {}

    def choose(self, tier: str, named: bool) -> Route:
        """Where to run; only named commands can run remotely (an exec-server runs nothing else)."""
        cfg = self.config
        if not named or cfg.mode == "local":
            return LOCAL
        if cfg.mode == "cloud":
            return Route("cloud", cfg.endpoints["cloud"])
        target = cfg.routes.get(tier, "local")
        if target == "local":
            return LOCAL
        if cfg.mode == "hybrid":
            return Route(target, cfg.endpoints[target])
        open_to_tier = {name: e for name, e in cfg.endpoints.items() if not e.tiers or tier in e.tiers}
        latencies = {name: s for name, s in self.latencies(open_to_tier).items() if s is not None}
        if not latencies:
            return LOCAL
        best = min(latencies, key=lambda name: (latencies[name], name))
        return Route(best, cfg.endpoints[best], fallback=True)

    def latencies(self, endpoints: Mapping[str, ExecEndpoint]) -> dict[str, float | None]:
        """Seconds per endpoint name (None: not healthy), from the cache when fresh, else probed."""
        cache = self._read_cache()
        now = self._clock()
        ttl = self.config.latency_ttl_s
        out: dict[str, float | None] = {}
        stale: dict[str, str] = {}
        for name, endpoint in endpoints.items():
            hit = cache.get(endpoint.url)
            if ttl > 0 and isinstance(hit, dict) and 0 <= now - float(hit.get("at", 0)) < ttl:
                out[name] = hit.get("s")
            else:
                stale[name] = endpoint.url
        if stale:
            timeout = self.config.probe_timeout_s
            with ThreadPoolExecutor(max_workers=min(len(stale), 8)) as pool:
                found = dict(zip(stale, pool.map(lambda url: self._probe(url, timeout), stale.values()),
                                 strict=True))
            for name, seconds in found.items():
                out[name] = seconds
                cache[stale[name]] = {"at": now, "s": seconds}
            if ttl > 0:
                self._write_cache(cache)
        self.measured = out
        return out

    def forget(self, route: Route) -> None:
        """Drop a route's cached latency (it just failed to start a run)."""
        if route.endpoint is None:
            return
        cache = self._read_cache()
        if cache.pop(route.endpoint.url, None) is not None:
            self._write_cache(cache)

    def _read_cache(self) -> dict[str, Any]:
        try:
            data = json.loads(self._cache_path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _write_cache(self, cache: dict[str, Any]) -> None:
        """Atomically (a concurrent exec reads the old or the new file, never half of one); a cache that
        cannot be written is only a cache."""
        try:
            self._cache_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self._cache_path.parent, prefix=".exec-latency.")
            with os.fdopen(fd, "w") as f:
                json.dump(cache, f)
            os.replace(tmp, self._cache_path)
        except OSError:
            pass


def _exit_code(data: Mapping[str, Any]) -> int:
    if data.get("timed_out"):
        return TIMED_OUT
    code = data.get("exit_code")
    if isinstance(code, int) and not isinstance(code, bool):
        return code
    signo = signal_number(str(data.get("signal")))
    return 128 + (signo or 0)


def _refusal(answer: http.client.HTTPResponse, body: bytes) -> str:
    try:
        message = str(json.loads(body).get("error", ""))[:300]
    except (ValueError, AttributeError):
        message = ""
    return f"HTTP {answer.status}" + (f": {message}" if message else "")


def run_remote(session: Any, lap_span: Span, route: Route, command: str, args: list[str]) -> int:
    """The ``spawn``, ``run`` and ``output`` sectors of running a named command on ``route``'s endpoint.
    Raises :class:`NotStarted` (safe to run elsewhere) or :class:`RemoteFailed` (never re-run)."""
    import http.client
    import sys

    endpoint = route.endpoint
    assert endpoint is not None
    key = os.environ.get(endpoint.key_env, "").strip()
    if not key:
        raise NotStarted(f"no API key: set {endpoint.key_env}")
    cfg = session.config.exec
    lap_span.set_attribute("chronograph.exec.endpoint", endpoint.url)
    conn, prefix = _connection(endpoint.url, cfg.probe_timeout_s)
    try:
        with session.sector("spawn"):
            try:
                conn.connect()
            except OSError as exc:
                raise NotStarted(f"cannot connect: {exc}") from None
        with session.sector("run"):
            headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
            propagate.inject(headers)  # the run sector is the server lap's parent
            body = json.dumps({"command": command, "args": args}).encode()
            try:
                conn.request("POST", prefix + "/api/v1/exec?format=v3", body, headers)
            except OSError as exc:
                raise NotStarted(f"cannot send the request: {exc}") from None
            if conn.sock is not None:
                conn.sock.settimeout(cfg.remote_timeout_s)
            try:
                answer = conn.getresponse()
                payload = answer.read(_MAX_RESPONSE + 1)
            except (OSError, http.client.HTTPException) as exc:
                raise RemoteFailed(f"no answer after the request was sent: {exc}") from None
            if answer.status != 200:
                reason = _refusal(answer, payload)
                if answer.getheader(STARTED_HEADER, "").lower() == "false":
                    raise NotStarted(reason)
                raise RemoteFailed(reason)
            try:
                document = json.loads(payload)
                data = document["data"]
                remote_request = (document.get("telemetry") or {}).get("requestId")
            except (ValueError, KeyError, TypeError, AttributeError):
                raise RemoteFailed("the answer is not an exec-server response") from None
        if remote_request:
            lap_span.set_attribute("chronograph.exec.remote_request_id", str(remote_request))
        with session.sector("output"):
            for stream, text in ((sys.stdout, data.get("stdout")), (sys.stderr, data.get("stderr"))):
                if text:
                    stream.write(str(text))
                stream.flush()
    finally:
        conn.close()
    code = _exit_code(data)
    finish(lap_span, code)
    return code
