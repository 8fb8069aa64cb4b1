"""Issue 9 item 10: bad files give one-line errors, health tells the truth, read-only serving works,
read commands never create a database."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from otel_chronograph.recorder import FlightStore
from tests.cli_config import assert_bad_config_is_an_error

from .helpers import synthetic_lap

CLI = str(Path(sys.executable).parent / "chronograph")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    out = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=60)
    assert "Traceback" not in out.stderr, out.stderr
    return out


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "flight.db"
    with FlightStore(path) as store:
        store.add_many([synthetic_lap(i) for i in range(5)])
    return path


@pytest.fixture
def corrupted(tmp_path: Path) -> Path:
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not a database " * 200)
    return path


@pytest.fixture
def read_only_copy(tmp_path: Path, db: Path) -> Iterator[Path]:
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "flight.db").write_bytes(db.read_bytes())
    subprocess.run(["mount", "--bind", str(ro), str(ro)], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
    try:
        yield ro / "flight.db"
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_missing_db_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    for command in (["laps"], ["show", "req_x"], ["serve", "--port", "0"]):
        out = cli(*command, "--db", str(tmp_path / "nope.db"))
        assert out.returncode == 1 and "no flight recorder database" in out.stderr
    assert not (tmp_path / "nope.db").exists()


@pytest.mark.parametrize("command", [["laps"], ["show", "req_0000000000000001"]])
def test_corrupted_db_is_a_one_line_error(corrupted: Path, command: list[str]) -> None:
    out = cli(*command, "--db", str(corrupted))
    assert out.returncode == 1
    assert str(corrupted) in out.stderr and "not a readable SQLite database" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_corrupted_outbox_for_billing_status_and_report(corrupted: Path) -> None:
    for command in (["billing", "status"], ["billing", "report"]):
        out = cli(*command, "--outbox", str(corrupted))
        assert out.returncode == 1, out
        assert str(corrupted) in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_read_only_database_can_be_listed_shown_and_served(read_only_copy: Path) -> None:
    listed = cli("laps", "--db", str(read_only_copy), "--json")
    assert listed.returncode == 0, listed.stderr
    assert cli("show", "req_0000000000000001", "--db", str(read_only_copy)).returncode == 0
    port = __import__("socket").socket()
    port.bind(("127.0.0.1", 0))
    free = port.getsockname()[1]
    port.close()
    server = subprocess.Popen([CLI, "serve", "--db", str(read_only_copy), "--port", str(free)],
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = __import__("time").monotonic() + 30
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{free}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and __import__("time").monotonic() < deadline
                __import__("time").sleep(0.05)
        assert health.status_code == 200 and health.json()["status"] == "ok"
        records = httpx.get(f"http://127.0.0.1:{free}/api/v1/flight-recorder", timeout=5).json()
        assert records["count"] == 5
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(30)


def test_health_reports_a_database_corrupted_under_a_running_server(db: Path) -> None:
    from starlette.testclient import TestClient

    from otel_chronograph.recorder._server import create_app

    store = FlightStore(db, read_only=True)
    client = TestClient(create_app(store, token=None), raise_server_exceptions=False)
    assert client.get("/healthz").json()["status"] == "ok"
    with open(db, "r+b") as f:  # damage the pages after the header, under the running server
        f.seek(100)
        f.write(os.urandom(16384))
    health = client.get("/healthz")
    assert health.status_code == 503 and health.json()["status"] == "error", health.text
    listed = client.get("/api/v1/flight-recorder")
    assert listed.status_code >= 500 and "Traceback" not in listed.text
    store.close()


def test_config_option_picks_the_database_and_a_bad_config_is_an_error(tmp_path: Path, db: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(f"chronograph:\n  recorder: {{persistent: true, path: {db}}}\n")
    out = cli("laps", "--config", str(good), "--json")
    assert out.returncode == 0 and "req_0000000000000001" in out.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("chronograph:\n  recorder: {max_records: -1}\n")
    out = cli("laps", "--config", str(bad))
    assert out.returncode == 1 and "chronograph.recorder.max_records" in out.stderr


def test_the_recorder_group_takes_config_like_its_commands(tmp_path: Path, db: Path) -> None:
    """Issue 8 item 7: `recorder` is a command group like `billing`, with `--config` on the group."""
    from click.testing import CliRunner

    from otel_chronograph.recorder._commands import recorder

    good = tmp_path / "good.yaml"
    good.write_text(f"chronograph:\n  recorder: {{persistent: true, path: {db}}}\n")
    out = CliRunner().invoke(recorder, ["--config", str(good), "laps", "--json"])
    assert out.exit_code == 0 and "req_0000000000000001" in out.output, out.output
    out = CliRunner().invoke(recorder, ["--config", str(good), "show", "req_0000000000000001"])
    assert out.exit_code == 0 and "REQUEST TIMELINE" in out.output, out.output
    assert_bad_config_is_an_error(recorder, ["laps"], tmp_path)
    assert_bad_config_is_an_error(recorder, ["show", "req_0000000000000001"], tmp_path)
