"""``chronograph exec-server`` as a real process on 127.0.0.1: keys, allowlist, argument rules, no shell,
timeouts that leave no process behind, output caps, formats, trace continuation, environment, OpenAPI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .helpers import (
    FREE,
    HERE,
    PRO,
    PYTHON,
    ServerProcess,
    alive,
    exec_server,
    wait_until,
    write_config,
    write_keys,
)

ECHO = "import sys; sys.stdout.write(sys.argv[1])"
PATTERN = "import sys; n = int(sys.argv[1]); sys.stdout.buffer.write(bytes(i % 251 for i in range(n)))"
ENV_DUMP = "import json, os; print(json.dumps(dict(os.environ)))"


def commands(pids_dir: Path) -> dict[str, Any]:
    return {
        "echo": {"argv": [PYTHON, "-c", ECHO, "{text}"], "args": {"text": {"max_length": 1000}},
                 "tiers": ["free", "pro"]},
        "report": {"argv": ["ls", "{path}"],
                   "args": {"path": {"pattern": "^[a-z0-9_./-]{1,64}$", "path": True}}, "tiers": ["pro"]},
        "bytes": {"argv": [PYTHON, "-c", PATTERN, "{n}"], "args": {"n": {"pattern": "^[0-9]{1,8}$"}},
                  "tiers": ["free", "pro"]},
        "tree": {"argv": [PYTHON, str(HERE / "process_tree.py"), "{name}"],
                 "args": {"name": {"pattern": "^[a-z]{1,20}$"}}, "tiers": ["free"],
                 "env": {"PIDS_DIR": str(pids_dir)}},
        "leave_behind": {"argv": ["sh", "-c", "sleep 300 & echo $!"], "tiers": ["free"]},
        "env": {"argv": [PYTHON, "-c", ENV_DUMP], "tiers": ["pro"], "env": {"FROM_CONFIG": "yes"}},
        "exit": {"argv": [PYTHON, "-c", "import sys; sys.stderr.write('bye'); sys.exit(int(sys.argv[1]))",
                          "{code}"], "args": {"code": {"pattern": "^[0-9]{1,3}$"}}, "tiers": ["free"]},
    }


TIERS = {"free": {"timeout_s": 3, "output_cap_bytes": 4096, "concurrency": 2, "rate_per_minute": 6000},
         "pro": {"timeout_s": 30, "output_cap_bytes": 1_048_576, "concurrency": 8, "rate_per_minute": 6000}}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("exec-server")
    (tmp / "pids").mkdir()
    cfg = write_config(tmp / "exec.yaml", {"commands": commands(tmp / "pids"), "tiers": TIERS,
                                           "max_request_bytes": 65536, "kill_grace_s": 0.5})
    with exec_server(cfg, write_keys(tmp / "keys.json"),
                     env={"STRIPE_API_KEY": "sk_test_never_for_commands", "SECRET_TOKEN": "x"}) as srv:
        srv.pids = tmp / "pids"  # type: ignore[attr-defined]
        yield srv


def post(server: ServerProcess, body: Any, headers: dict[str, str] | None = None, fmt: str | None = None,
         timeout: float = 60) -> httpx.Response:
    params = {"format": fmt} if fmt else None
    content = body if isinstance(body, (bytes, str)) else json.dumps(body)
    auth = headers if headers is not None else PRO
    return httpx.post(server.url + "/api/v1/exec", content=content, params=params, timeout=timeout,
                      headers={"Content-Type": "application/json", **auth})


def refused(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    assert response.headers["chronograph-exec-started"] == "false"
    assert "Traceback" not in response.text
    message: str = response.json()["error"]
    return message


def test_401_without_or_with_a_wrong_key(server: ServerProcess) -> None:
    body = {"command": "echo", "args": ["hi"]}
    for headers in ({}, {"Authorization": "Bearer wrong-key-000000000"},
                    {"Authorization": "pro-key-0000000000000"},
                    {"Authorization": "Basic pro-key-0000000000000"}, {"Authorization": "Bearer"},
                    {"Authorization": "Bearer pro-key-0000000000000x"}):
        response = post(server, body, headers)
        refused(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")


def test_403_for_a_command_the_key_may_not_run(server: ServerProcess) -> None:
    answer = post(server, {"command": "report", "args": ["x"]}, FREE)
    assert "not allowed for the free tier" in refused(answer, 403)
    refused(post(server, {"command": "rm", "args": ["-rf", "/"]}), 403)
    refused(post(server, {"command": "../echo", "args": ["x"]}), 403)


@pytest.mark.parametrize(("body", "reason"), [
    ({"command": "echo", "args": []}, "expected 1 argument"),
    ({"command": "echo", "args": ["a", "b"]}, "expected 1 argument"),
    ({"command": "echo", "args": [1]}, "must be a string"),
    ({"command": "echo", "args": ["-rf"]}, "starts with '-'"),
    ({"command": "echo", "args": ["a\x00b"]}, "NUL byte"),
    ({"command": "echo", "args": ["x" * 1001]}, "longer than 1000"),
    ({"command": "echo", "args": ["\ud800"]}, "lone surrogate"),
    ({"command": "report", "args": ["../../etc/passwd"]}, "without '..'"),
    ({"command": "report", "args": ["docs/../../etc"]}, "without '..'"),
    ({"command": "report", "args": ["/etc"]}, "without '..'"),
    ({"command": "report", "args": ["a;b"]}, "does not match"),
    ({"command": "report", "args": ["ok\n"]}, "does not match"),
    ({"command": "echo", "args": "hi"}, "args must be a list"),
    ({"command": "echo", "args": ["hi"], "shell": True}, "unknown field"),
    ({"args": ["hi"]}, "command must be"),
    (["echo"], "must be a JSON object"),
])
def test_422_for_invalid_arguments(server: ServerProcess, body: Any, reason: str) -> None:
    assert reason in refused(post(server, body), 422)


def test_400_413_and_bad_format(server: ServerProcess) -> None:
    refused(post(server, b"{not json"), 400)
    refused(post(server, b"[" * 100_000 + b"]" * 100_000), 413)
    refused(post(server, b"[" * 30_000 + b"]" * 30_000), 400)  # nesting beyond the JSON parser's depth
    refused(post(server, {"command": "echo", "args": ["y" * 70_000]}), 413)
    refused(post(server, {"command": "echo", "args": ["x"]}, fmt="v9"), 422)


def test_shell_metacharacters_never_reach_a_shell(server: ServerProcess, tmp_path: Path) -> None:
    target = tmp_path / "pwned"
    for value in (f"$(touch {target})", f"`touch {target}`", f"; touch {target}", f"| touch {target}",
                  f"&& touch {target}", f"> {target}", "*", "~", "$HOME", "a\nb", "'\"\\", "%s%n"):
        response = post(server, {"command": "echo", "args": [value]})
        assert response.status_code == 200, response.text
        assert response.json()["data"]["stdout"] == value
    assert not target.exists()


def test_run_past_its_timeout_leaves_no_process_alive(server: ServerProcess) -> None:
    response = post(server, {"command": "tree", "args": ["alpha"]}, FREE)
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["timed_out"] is True and data["exit_code"] is None and data["signal"] == "SIGKILL"
    assert data["stdout"] == "tree ready\n"
    pids = json.loads((server.pids / "alpha.json").read_text())  # type: ignore[attr-defined]
    assert set(pids) == {"command", "child", "grandchild", "daemon"}
    # killed before the answer was sent; a zombie not yet reaped by init counts as dead
    assert [name for name, pid in pids.items() if alive(pid)] == []
    assert response.json()["telemetry"]["status"] == "RED"


def test_what_a_command_leaves_running_is_killed_when_it_ends(server: ServerProcess) -> None:
    data = post(server, {"command": "leave_behind"}, FREE).json()["data"]
    assert data["exit_code"] == 0 and data["timed_out"] is False
    assert not alive(int(data["stdout"]))


def _pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def test_output_over_the_cap_keeps_head_and_tail_with_size_and_hash(server: ServerProcess) -> None:
    n = 100_000
    whole = _pattern(n)
    data = post(server, {"command": "bytes", "args": [str(n)]}, FREE).json()["data"]
    assert data["truncated"] is True
    assert data["stdout_bytes"] == n
    assert data["stdout_sha256"] == hashlib.sha256(whole).hexdigest()
    head, marker, tail = data["stdout"].partition("\n[... chronograph: ")
    assert head == whole[:2048].decode("utf-8", "replace")
    assert tail.split("...]\n", 1)[1] == whole[-2048:].decode("utf-8", "replace")
    assert f"{n - 4096} of {n} bytes cut" in marker + tail
    small = post(server, {"command": "bytes", "args": ["4096"]}, FREE).json()["data"]
    assert small["truncated"] is False and small["stdout"] == _pattern(4096).decode("utf-8", "replace")
    assert small["stdout_sha256"] == hashlib.sha256(_pattern(4096)).hexdigest()


def test_exit_status_and_stderr_come_back(server: ServerProcess) -> None:
    data = post(server, {"command": "exit", "args": ["3"]}, FREE).json()
    assert data["data"]["exit_code"] == 3 and data["data"]["stderr"] == "bye"
    assert data["telemetry"]["status"] == "RED"


def test_formats_and_trace_continuation(server: ServerProcess) -> None:
    body = {"command": "echo", "args": ["v"]}
    v1 = post(server, body, fmt="v1").json()
    assert set(v1) == {"data"} and v1["data"]["stdout"] == "v"
    v2 = post(server, body, fmt="v2").json()
    assert set(v2) == {"data", "telemetry"} and "billing" not in v2["telemetry"]
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    traceparent = f"00-{trace_id}-b7ad6b7169203331-01"
    v3 = post(server, {"command": "env"}, {**PRO, "traceparent": traceparent}).json()
    t = v3["telemetry"]
    assert t["traceId"] == trace_id and t["billing"]["tier"] == "pro" and t["command"] == "env"
    assert list(t["sectors"]) == ["s1_spawn", "s2_run", "s3_output"]
    child_env = json.loads(v3["data"]["stdout"])
    assert child_env["TRACEPARENT"].split("-")[1] == trace_id  # the command continues it too


def test_commands_get_only_the_passed_environment(server: ServerProcess) -> None:
    env = json.loads(post(server, {"command": "env"}).json()["data"]["stdout"])
    assert "STRIPE_API_KEY" not in env and "SECRET_TOKEN" not in env
    assert env["FROM_CONFIG"] == "yes" and "PATH" in env


def test_errors_are_json_never_a_traceback(server: ServerProcess) -> None:
    assert httpx.get(server.url + "/api/v1/exec").status_code == 405
    assert httpx.get(server.url + "/nope").json()["status"] == 404
    assert httpx.get(server.url + "/healthz").json()["status"] == "ok"
    doc = httpx.get(server.url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/api/v1/exec" in doc["paths"]


def test_schemathesis_finds_no_server_error(server: ServerProcess, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(st), "run", f"{server.url}/openapi.json", "--checks", "all", "--max-examples", "60",
         "--seed", "11", "-H", f"Authorization: {PRO['Authorization']}",
         "--report", "junit", "--report-junit-path", str(tmp_path / "junit.xml")],
        capture_output=True, text=True, timeout=400, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    wait_until(lambda: (tmp_path / "junit.xml").exists(), 5, "the junit report")
