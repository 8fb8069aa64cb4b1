"""``chronograph exec`` as a real process: laps, exit status, signals, pass-through, environment, joining."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.otlp_receiver import OTLPReceiver
from tests.terminal import run_in_pty

from .helpers import BIN, CHRONOGRAPH, HERE, PYTHON, clean_env, last_json, run_exec, write_config


def test_exit_status_passes_through_with_a_lap_on_stderr() -> None:
    env = clean_env()
    for code in (0, 3, 255):
        done = run_exec(["--", PYTHON, "-c", f"import sys; sys.exit({code})"], env)
        assert done.returncode == code, done.stderr
        err = done.stderr.decode()
        assert "LAP TIME" in err and "Sector 1: spawn" in err and "Sector 2: run" in err
        assert ("ERROR" in err) == (code != 0)


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGKILL, signal.SIGSEGV])
def test_death_by_signal_is_128_plus_n(signo: int) -> None:
    script = f"import os; os.kill(os.getpid(), {int(signo)})"
    done = run_exec(["--json", "--", PYTHON, "-c", script], clean_env())
    assert done.returncode == 128 + signo
    assert last_json(done.stdout)["data"] == {"exit_code": 128 + signo}


def test_stdin_stdout_stderr_pass_through_unchanged() -> None:
    payload = bytes(range(256)) * 300 + b"\r\n\x1b[31m no newline at the end"
    script = "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read()); sys.stderr.write('to stderr\\n')"
    done = run_exec(["--", PYTHON, "-c", script], clean_env(), input_bytes=payload)
    assert done.returncode == 0
    assert done.stdout == payload  # byte for byte: no table, no re-encoding on stdout
    assert done.stderr.startswith(b"to stderr\n") and b"LAP TIME" in done.stderr


def test_environment_is_a_merged_copy_with_the_carriers(tmp_path: Path) -> None:
    given_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    env = clean_env(MY_SETTING="kept", TRACEPARENT=f"00-{given_trace}-00f067aa0ba902b7-01",
                    TRACESTATE="vendor=abc", BAGGAGE="customer.id=cus_9",
                    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT="http://127.0.0.1:9/v1/traces")
    dump = tmp_path / "env.json"
    done = run_exec(["--json", "--", PYTHON, "-c",
                     f"import json, os; json.dump(dict(os.environ), open({str(dump)!r}, 'w'))"], env)
    assert done.returncode == 0, done.stderr
    child = json.loads(dump.read_text())
    lap = last_json(done.stdout)["telemetry"]
    # merged: everything we had is there, unchanged unless it is a carrier or the trace endpoint
    for name, value in env.items():
        if name not in ("TRACEPARENT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
            assert child[name] == value, name
    _, trace_id, parent_span, _ = child["TRACEPARENT"].split("-")
    assert trace_id == lap["traceId"] == given_trace  # the lap continues the trace it was given
    assert parent_span != lap["requestId"].removeprefix("req_")  # the child hangs under `run`, not the root
    assert child["TRACESTATE"] == "vendor=abc" and child["BAGGAGE"] == "customer.id=cus_9"
    assert child["OTEL_EXPORTER_OTLP_ENDPOINT"].startswith("http://127.0.0.1:")
    assert child["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert child["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] == child["OTEL_EXPORTER_OTLP_ENDPOINT"] + "/v1/traces"
    # metrics keep going where they went (the SDK default), never to the trace receiver
    assert child["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"] == "http://localhost:4317"


def test_uninstrumented_child_gets_a_lap_with_identity() -> None:
    done = run_exec(["--json", "--command", "faf score", "--tier", "pro", "--customer", "cus_1", "--",
                     "sh", "-c", "echo hello"], clean_env())
    assert done.returncode == 0
    lines = done.stdout.decode().splitlines()
    assert lines[0] == "hello"
    doc = json.loads(lines[-1])
    assert doc["data"] == {"exit_code": 0}
    t = doc["telemetry"]
    assert list(t["sectors"]) == ["s1_spawn", "s2_run", "s3_output"]
    assert t["command"] == "faf score" and t["billing"]["tier"] == "pro"
    assert t["lapTime"] >= t["sectors"]["s2_run"] > 0
    assert b"LAP TIME" not in done.stderr  # --json replaces the table


def test_default_command_is_the_program_name() -> None:
    done = run_exec(["--json", "--", "true"], clean_env())
    assert last_json(done.stdout)["telemetry"]["command"] == "true"


def test_command_not_found_and_not_executable(tmp_path: Path) -> None:
    done = run_exec(["--json", "--", "no-such-program-xyz"], clean_env())
    assert done.returncode == 127
    assert b"no-such-program-xyz: command not found" in done.stderr
    assert last_json(done.stdout)["telemetry"]["status"] == "RED"
    script = tmp_path / "not-executable.sh"
    script.write_text("echo hi\n")
    assert run_exec(["--", str(script)], clean_env()).returncode == 126


def test_instrumented_child_spans_join_the_lap_and_are_exported_once() -> None:
    with OTLPReceiver() as receiver:
        env = clean_env(OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                        OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint, OTEL_SERVICE_NAME="exec-test",
                        OTEL_PYTHON_DISTRO="chronograph", OTEL_PYTHON_CONFIGURATOR="chronograph",
                        OTEL_BSP_SCHEDULE_DELAY="50")
        done = run_exec(["--json", "--command", "child", "--", str(BIN / "opentelemetry-instrument"), PYTHON,
                         str(HERE / "instrumented_child.py")], env, timeout_s=120)
        assert done.returncode == 0, done.stderr.decode()
        assert done.stdout.decode().splitlines()[0] == f"total {sum(range(2000))}"
        lap = last_json(done.stdout)["telemetry"]
        assert list(lap["sectors"]) == ["s1_spawn", "s2_run", "s3_load", "s4_output"]
        assert 0 < lap["sectors"]["s3_load"] < lap["sectors"]["s2_run"]
        spans = receiver.spans  # exec exits only after its exporter has been flushed
        ids = [s["spanId"] for s in spans]
        assert len(ids) == len(set(ids)), "a span was exported twice"
        by_name = {s["name"]: s for s in spans}
        assert {"child", "spawn", "run", "output", "child main", "load", "render"} <= set(by_name)
        assert any(s["attributes"].get("db.system") == "sqlite" for s in spans)
        assert {s["traceId"] for s in spans} == {by_name["child"]["traceId"]}
        root = by_name["child"]["attributes"]
        assert root["chronograph.request_id"] == lap["requestId"]
        assert root["chronograph.sector.load.ms"] == lap["sectors"]["s3_load"]
        # the child's top span hangs under `run` (TRACEPARENT named it before it started)
        assert by_name["child main"]["parentSpanId"] == by_name["run"]["spanId"]
        assert by_name["child main"]["resource"]["service.name"] == "exec-test"


def test_an_auto_instrumented_child_joins_without_code_changes() -> None:
    """Under the chronograph configurator, a child started by exec makes the carried trace its own."""
    with OTLPReceiver() as receiver:
        env = {**_exporting(receiver), "OTEL_PYTHON_DISTRO": "chronograph",
               "OTEL_PYTHON_CONFIGURATOR": "chronograph"}
        done = run_exec(["--json", "--command", "plain", "--", str(BIN / "opentelemetry-instrument"), PYTHON,
                         str(HERE / "plain_child.py")], env, timeout_s=120)
        assert done.returncode == 0, done.stderr.decode()
        lap = last_json(done.stdout)["telemetry"]
        assert list(lap["sectors"]) == ["s1_spawn", "s2_run", "s3_load", "s4_output"]
        by_name = {s["name"]: s for s in receiver.spans}
        assert by_name["plain main"]["traceId"] == by_name["plain"]["traceId"]
        assert by_name["plain main"]["parentSpanId"] == by_name["run"]["spanId"]
    # the same child run directly (no exec, a stale TRACEPARENT in its environment) starts its own trace
    stale = {**clean_env(), "TRACEPARENT": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
             "OTEL_PYTHON_DISTRO": "chronograph", "OTEL_PYTHON_CONFIGURATOR": "chronograph",
             "OTEL_TRACES_EXPORTER": "console"}
    direct = subprocess.run([str(BIN / "opentelemetry-instrument"), PYTHON, str(HERE / "plain_child.py")],
                            env=stale, capture_output=True, timeout=120)
    assert direct.returncode == 0 and b"plain main" in direct.stdout
    assert b"4bf92f3577b34da6a3ce929d0e0e4736" not in direct.stdout


def _exporting(receiver: OTLPReceiver) -> dict[str, str]:
    return clean_env(OTEL_TRACES_EXPORTER="otlp", OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                     OTEL_EXPORTER_OTLP_ENDPOINT=receiver.endpoint)


def _signal_events(receiver: OTLPReceiver, lap_name: str) -> list[tuple[str, bool]]:
    root = next(s for s in receiver.spans if s["name"] == lap_name)
    out = []
    for event in root.get("events", []):
        if event["name"] == "exec.signal":
            attrs = {kv["key"]: next(iter(kv["value"].values())) for kv in event["attributes"]}
            out.append((attrs["signal"], attrs["forwarded"]))
    return out


def test_sigterm_to_exec_is_forwarded_to_the_child() -> None:
    script = ("import signal, sys\n"
              "signal.signal(signal.SIGTERM, lambda *a: (print('got TERM', flush=True), sys.exit(7)))\n"
              "print('ready', flush=True)\n"
              "signal.pause()\n")
    with OTLPReceiver() as receiver:
        proc = subprocess.Popen([CHRONOGRAPH, "exec", "--command", "trap", "--", PYTHON, "-c", script],
                                env=_exporting(receiver), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 7, err
        assert out == b"got TERM\n"
        assert b"LAP TIME" in err  # the lap is still completed and shown
        assert _signal_events(receiver, "trap") == [("SIGTERM", True)]


def test_ctrl_c_on_a_terminal_reaches_the_child_once() -> None:
    """The terminal sends SIGINT to the whole foreground group: exec must not send a second one."""
    script = ("import signal, sys\n"
              "signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGINT])\n"
              "print('ready', flush=True)\n"
              "info = signal.sigwaitinfo([signal.SIGINT])\n"
              "print('sigint from', 'terminal' if info.si_code == 0x80 else 'kill', flush=True)\n"
              "sys.exit(130)\n")
    with OTLPReceiver() as receiver:
        code, output = run_in_pty([CHRONOGRAPH, "exec", "--command", "ctrl-c", "--", PYTHON, "-c", script],
                                  _exporting(receiver), answer=(b"ready", b"\x03"))
        assert "sigint from terminal" in output, output
        assert code == 130
        assert _signal_events(receiver, "ctrl-c") == [("SIGINT", False)]


def test_named_command_runs_locally_with_checked_arguments(tmp_path: Path) -> None:
    cfg = write_config(tmp_path / "c.yaml", {"commands": {"echo_upper": {
        "argv": [PYTHON, "-c", "import sys; print(sys.argv[1].upper())", "{text}"],
        "args": {"text": {"max_length": 20}}, "tiers": ["free"]}}})
    env = clean_env(CHRONOGRAPH_CONFIG=str(cfg))
    done = run_exec(["--command", "echo_upper", "--", "hello; rm -rf /"], env)
    assert done.returncode == 0 and done.stdout == b"HELLO; RM -RF /\n"
    for bad, reason in (("-rf", b"starts with '-'"), ("x" * 21, b"longer than 20")):
        refused = run_exec(["--command", "echo_upper", "--", bad], env)
        assert refused.returncode == 125 and reason in refused.stderr
    assert run_exec(["--command", "echo_upper", "--", "a", "b"], env).returncode == 125


def test_each_run_is_billed_once_through_the_outbox(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.db"
    cfg = write_config(tmp_path / "c.yaml", {}, billing={
        "enabled": True, "rates": {"faf score": "0.25"}, "meter": {"outbox": str(outbox)}})
    env = clean_env(CHRONOGRAPH_CONFIG=str(cfg))
    ids = []
    for _ in range(3):
        done = run_exec(["--json", "--command", "faf score", "--tier", "pro", "--customer", "cus_1", "--",
                         "true"], env)
        assert done.returncode == 0, done.stderr
        ids.append(last_json(done.stdout)["telemetry"]["requestId"])
    with sqlite3.connect(outbox) as db:
        rows = db.execute("select identifier, customer, tier, cost, command from usage").fetchall()
    assert sorted(r[0] for r in rows) == sorted(ids)
    assert {r[1:] for r in rows} == {("cus_1", "pro", "0.25", "faf score")}


def test_bad_configuration_is_an_error_before_running(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("chronograph:\n  exec:\n    mode: everywhere\n")
    marker = tmp_path / "ran"
    done = run_exec(["--config", str(cfg), "--", "touch", str(marker)], clean_env())
    assert done.returncode != 0 and b"chronograph.exec.mode" in done.stderr
    assert not marker.exists()
