"""Routing of ``chronograph exec`` between here and real exec-servers: by tier, by measured latency,
falling back here only when a remote run certainly did not start."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from .delay_proxy import DelayProxy
from .helpers import (
    KEYS,
    PYTHON,
    ServerProcess,
    clean_env,
    exec_server,
    last_json,
    run_exec,
    write_config,
    write_keys,
)

PRO_KEY = "pro-key-0000000000000"
FREE_KEY = "free-key-000000000000"


def whoami(label: str) -> dict[str, Any]:
    """The same named command everywhere; each place prints its own label, so the output says where it ran."""
    script = f"import sys; print({label!r}, sys.argv[1]); sys.exit(len(sys.argv[1]) % 7)"
    return {"whoami": {"argv": [PYTHON, "-c", script, "{text}"], "args": {"text": {"max_length": 100}},
                       "tiers": ["free", "pro", "enterprise"]}}


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, ServerProcess]]:
    tmp = tmp_path_factory.mktemp("routing")
    keys = write_keys(tmp / "keys.json", {**KEYS, "ent-key-00000000000000": {"customer": "cus_e",
                                                                             "tier": "enterprise"}})
    with ExitStack() as stack:
        out = {}
        for label in ("A", "B"):
            cfg = write_config(tmp / f"{label}.yaml", {"commands": whoami(label)})
            out[label] = stack.enter_context(exec_server(cfg, keys))
        yield out


def client_env(tmp: Path, exec_section: dict[str, Any], key: str = PRO_KEY) -> dict[str, str]:
    cfg = write_config(tmp / "client.yaml", {"commands": whoami("L"), **exec_section})
    return clean_env(CHRONOGRAPH_CONFIG=str(cfg), CHRONOGRAPH_EXEC_KEY=key, XDG_CACHE_HOME=str(tmp / "cache"))


def where(args: list[str], env: dict[str, str]) -> tuple[str, int, str]:
    done = run_exec(["--command", "whoami", *args, "--", "hello"], env)
    return done.stdout.decode().split(" ")[0], done.returncode, done.stderr.decode()


SMART = {"mode": "smart", "routes": {"free": "local", "pro": "remote", "enterprise": "remote"}}


@pytest.mark.parametrize("fast", ["A", "B"])
def test_smart_picks_the_endpoint_with_the_lower_latency(servers: dict[str, ServerProcess], tmp_path: Path,
                                                         fast: str) -> None:
    slow = "B" if fast == "A" else "A"
    with DelayProxy(servers[slow].url, 0.15) as proxy:
        env = client_env(tmp_path, {**SMART, "endpoints": {"one": {"url": servers[fast].url},
                                                           "two": {"url": proxy.url}}})
        label, code, err = where(["--tier", "pro"], env)
        assert (label, code) == (fast, 5), err  # the remote exit status comes back ("hello": 5)
        swapped = {"one": {"url": proxy.url}, "two": {"url": servers[fast].url}}
        env2 = client_env(tmp_path, {**SMART, "latency_ttl_s": 0, "endpoints": swapped})
        assert where(["--tier", "pro"], env2)[0] == fast  # not the first listed: the measured one


def test_by_tier_free_runs_here(servers: dict[str, ServerProcess], tmp_path: Path) -> None:
    env = client_env(tmp_path, {**SMART, "endpoints": {"one": {"url": servers["A"].url}}})
    assert where(["--tier", "free"], env)[0] == "L"
    hybrid = client_env(tmp_path, {"mode": "hybrid", "endpoints": {"cloud": {"url": servers["A"].url},
                                                                   "dedicated": {"url": servers["B"].url}}})
    assert where(["--tier", "free"], hybrid)[0] == "L"
    assert where(["--tier", "pro"], hybrid)[0] == "A"
    ent = client_env(tmp_path, {"mode": "hybrid", "endpoints": {"cloud": {"url": servers["A"].url},
                                                                "dedicated": {"url": servers["B"].url}}},
                     key="ent-key-00000000000000")
    assert where(["--tier", "enterprise"], ent)[0] == "B"
    cloud = client_env(tmp_path, {"mode": "cloud", "endpoints": {"cloud": {"url": servers["B"].url}}})
    assert where(["--tier", "free"], client_env(tmp_path, {"mode": "cloud", "endpoints": {
        "cloud": {"url": servers["B"].url}}}, key=FREE_KEY))[0] == "B"
    assert where(["--tier", "pro"], cloud)[0] == "B"


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # closed again: connection refused


def test_smart_with_an_endpoint_stopped_uses_the_other_then_here(servers: dict[str, ServerProcess],
                                                                  tmp_path: Path) -> None:
    with DelayProxy(servers["B"].url, 0.1) as slow:
        env = client_env(tmp_path, {**SMART, "endpoints": {"fast": {"url": _dead_url()},
                                                           "slow": {"url": slow.url}}})
        assert where(["--tier", "pro"], env)[0] == "B"
    both_down = {"x": {"url": _dead_url()}, "y": {"url": _dead_url()}}
    nothing = client_env(tmp_path, {**SMART, "endpoints": both_down})
    label, code, err = where(["--tier", "pro"], nothing)
    assert (label, code) == ("L", 5), err


def test_smart_falls_back_here_when_the_chosen_endpoint_fails_to_start(tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys.json")
    cfg = write_config(tmp_path / "C.yaml", {"commands": whoami("C")})
    with exec_server(cfg, keys) as c:
        env = client_env(tmp_path, {**SMART, "latency_ttl_s": 300, "endpoints": {"c": {"url": c.url}}})
        assert where(["--tier", "pro"], env)[0] == "C"  # measured and cached
        c.stop()
    label, code, err = where(["--tier", "pro"], env)  # the cache still names it: the run cannot start there
    assert (label, code) == ("L", 5)
    assert "did not start the run" in err and "running it here" in err
    cache = json.loads((tmp_path / "cache" / "otel-chronograph" / "exec-latency.json").read_text())
    assert c.url not in cache  # forgotten: the next run measures again
    with exec_server(cfg, keys) as c2:
        env3 = client_env(tmp_path, {**SMART, "endpoints": {"c": {"url": c2.url}}},
                          key="not-a-key-0000000000")
        label, _, err = where(["--tier", "pro"], env3)
        assert label == "L" and "HTTP 401" in err  # refused: started=false, so it may run here


class _Swallow:
    """An endpoint that accepts the request and then hangs up (or answers 502 as a proxy would): the run
    may have started behind it, so it must never be run again here."""

    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                if data.startswith(b"GET /healthz"):
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                    continue
                self.requests += 1
                if self.answer is not None:
                    conn.sendall(self.answer)


@pytest.mark.parametrize("answer", [None, b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n"])
def test_a_run_that_may_have_started_is_never_run_again(tmp_path: Path, answer: bytes | None) -> None:
    endpoint = _Swallow(answer)
    env = client_env(tmp_path, {**SMART, "latency_ttl_s": 0, "endpoints": {"s": {"url": endpoint.url}}})
    done = run_exec(["--command", "whoami", "--tier", "pro", "--", "hello"], env)
    assert done.returncode == 125, done.stderr
    assert done.stdout == b"" and b"not re-run" in done.stderr
    assert endpoint.requests == 1
    endpoint.listener.close()


def test_remote_run_is_one_lap_with_the_remote_output(servers: dict[str, ServerProcess],
                                                      tmp_path: Path) -> None:
    env = client_env(tmp_path, {"mode": "cloud", "endpoints": {"cloud": {"url": servers["A"].url}}})
    done = run_exec(["--json", "--command", "whoami", "--tier", "pro", "--", "hey"], env)
    assert done.returncode == 3
    assert done.stdout.decode().splitlines()[0] == "A hey"
    lap = last_json(done.stdout)
    assert lap["data"] == {"exit_code": 3}
    assert list(lap["telemetry"]["sectors"]) == ["s1_spawn", "s2_run", "s3_output"]
