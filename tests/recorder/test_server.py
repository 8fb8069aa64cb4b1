"""The HTTP API against a real ``chronograph serve`` process on 127.0.0.1, schemathesis, tokens, embedding."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import otel_chronograph as chrono
from otel_chronograph.recorder import FlightStore
from otel_chronograph.recorder._server import openapi_document

from .helpers import recording, server_process, synthetic_lap

API = "/api/v1/flight-recorder"


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("api") / "flight.db"
    with FlightStore(path) as store:
        store.add_many([synthetic_lap(i, lap_ms=10.0, status="GREEN" if i % 3 else "RED",
                                      command="faf score" if i % 2 else "faf chat") for i in range(1, 31)])
        store.add(synthetic_lap(99, lap_ms=500.0, command="faf score"))  # 50x the median: an anomaly
    return path


@pytest.fixture(scope="module")
def url(db: Path) -> Iterator[str]:
    with server_process(db) as base:
        yield base


def test_healthz_and_openapi(url: str) -> None:
    assert httpx.get(url + "/healthz").json()["status"] == "ok"
    doc = httpx.get(url + "/openapi.json").json()
    assert doc["openapi"].startswith("3.") and API in doc["paths"] and API + "/{id}" in doc["paths"]


def test_list_is_newest_first_and_filters(url: str) -> None:
    r = httpx.get(url + API)
    assert r.status_code == 200
    records = r.json()["records"]
    assert len(records) == 10
    assert records[0]["id"] == "req_" + f"{99:016x}"
    starts = [x["timestamp_ms"] for x in records]
    assert starts == sorted(starts, reverse=True)
    chat = httpx.get(url + API, params={"n": 100, "command": "faf chat"}).json()["records"]
    assert len(chat) == 15 and {x["command"] for x in chat} == {"faf chat"}
    red_chat = httpx.get(url + API, params={"n": 100, "command": "faf chat", "status": "RED"}).json()
    assert red_chat["count"] == 5 and {x["status"] for x in red_chat["records"]} == {"RED"}
    assert httpx.get(url + API, params={"n": 3}).json()["count"] == 3


def test_get_by_request_id_and_trace_id(url: str) -> None:
    rid = "req_" + f"{7:016x}"
    body = httpx.get(f"{url}{API}/{rid}").json()
    assert set(body) >= {"id", "trace_id", "conversation_id", "timestamp", "events", "summary", "sectors",
                         "status", "cost", "anomaly", "text"}
    assert body["id"] == rid and body["conversation_id"] == "conv-1" and body["anomaly"] is False
    assert body["text"].startswith(f"REQUEST TIMELINE: {rid}\n") and "SUMMARY:" in body["text"]
    assert body["summary"]["total_ms"] == 10.0
    by_trace = httpx.get(f"{url}{API}/{body['trace_id']}").json()
    assert by_trace["id"] == rid


def test_the_slow_lap_is_flagged_as_an_anomaly(url: str) -> None:
    body = httpx.get(f"{url}{API}/req_{99:016x}").json()
    assert body["anomaly"] is True
    assert body["history"]["median_ms"] == 10.0 and body["history"]["count"] == 16
    assert "ANOMALY: 50.0× the median" in body["text"]


def test_chrome_trace_endpoint(url: str) -> None:
    body = httpx.get(f"{url}{API}/req_{5:016x}/chrome-trace").json()
    assert {e["ph"] for e in body["traceEvents"]} >= {"X", "M"}


@pytest.mark.parametrize("params", [{"n": "x"}, {"n": "0"}, {"n": "1001"}, {"n": "-1"}, {"status": "BLUE"},
                                    {"status": ""}])
def test_bad_query_parameters_are_json_400(url: str, params: dict[str, str]) -> None:
    r = httpx.get(url + API, params=params)
    assert r.status_code == 400 and r.headers["content-type"] == "application/json"
    assert "error" in r.json()


@pytest.mark.parametrize("request_line", [
    b"GET /api/v1/flight-recorder?n=" + b"9" * 5000 + b" HTTP/1.1",  # int() refuses > 4300 digits
    b"GET /api/v1/flight-recorder?command=%ff%fe&status=%ff HTTP/1.1",  # not UTF-8 once decoded
    b"GET /api/v1/flight-recorder/" + b"a" * 5000 + b" HTTP/1.1",
])
def test_malformed_requests_are_json_4xx_from_the_real_server(url: str, request_line: bytes) -> None:
    """Issue 9: found by the fuzz test (the long ``n`` was a 500 with a traceback in the log)."""
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request_line + b"\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1])
    assert 400 <= status < 500 and b"application/json" in head, answer[:300]
    assert "error" in json.loads(body) and b"Traceback" not in body


@pytest.mark.parametrize("ident", ["req_ffffffffffffffff", "f" * 32, "nothing", "%00", "req_%27--"])
def test_unknown_ids_are_json_404(url: str, ident: str) -> None:
    r = httpx.get(f"{url}{API}/{ident}")
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert r.json()["error"].startswith("no flight record")


def test_schemathesis_finds_no_server_error(url: str, tmp_path: Path) -> None:
    st = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(st), "run", f"{url}/openapi.json", "--checks", "all", "--max-examples", "40", "--seed", "7",
         "--report", "junit", "--report-junit-path", str(tmp_path / "junit.xml")],
        capture_output=True, text=True, timeout=170, cwd=tmp_path)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout
    assert (tmp_path / "junit.xml").read_text().count("<testcase") >= 4


def test_token_protects_the_api(db: Path) -> None:
    with server_process(db, token="s3cret") as base:
        assert httpx.get(base + API).status_code == 401
        assert httpx.get(base + API, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(f"{base}{API}/req_{7:016x}", headers={"Authorization": "s3cret"}).status_code == 401
        r = httpx.get(f"{base}{API}/req_{7:016x}")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"] == "missing or wrong bearer token"
        ok = httpx.get(f"{base}{API}/req_{7:016x}", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert httpx.get(base + "/healthz").status_code == 200
        assert "bearer" in httpx.get(base + "/openapi.json").json()["components"]["securitySchemes"]


def test_embedded_in_the_instrumented_process() -> None:
    with recording() as (p, proc, rec):
        server = rec.serve(port=0, token=None)
        try:
            assert server.host == "127.0.0.1" and server.port > 0
            with chrono.lap("faf score", session_id="conv-e", tracer_provider=p) as lap:
                lap.event("Response Received", tokens=256)
            proc.force_flush()
            body = httpx.get(f"{server.url}{API}/{lap.request_id}").json()
            assert body["conversation_id"] == "conv-e"
            assert [e["stage"] for e in body["events"]] == ["Lap Start", "Response Received", "Lap End"]
            assert httpx.get(server.url + API).json()["records"][0]["id"] == lap.request_id
        finally:
            server.stop()


def test_openapi_document_declares_errors() -> None:
    doc = openapi_document(secured=True)
    get = doc["paths"][API + "/{id}"]["get"]
    assert set(get["responses"]) == {"200", "404", "401", "414", "503"}
    assert set(doc["paths"]["/healthz"]["get"]["responses"]) == {"200", "503"}
    assert doc["security"] == [{"bearer": []}]
