"""hypothesis over the exec endpoint's untrusted input (body, query, Authorization), in process: never a
5xx, never a traceback, always JSON, and ``Chronograph-Exec-Started: true`` only on a 200."""

from __future__ import annotations

import json
import string
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from otel_chronograph import load_config
from otel_chronograph.exec._keys import Identity, KeyRing
from otel_chronograph.exec._server import ExecService, create_app
from otel_chronograph.exec._session import Session

KEY = "fuzz-key-000000000000"
CONFIG = load_config({"recorder": {"enabled": False}, "exec": {
    "commands": {"ok": {"argv": ["true", "{word}"], "tiers": ["pro"],
                        "args": {"word": {"max_length": 8, "pattern": "[a-z]*"}}}},
    "tiers": {"pro": {"timeout_s": 5, "output_cap_bytes": 1024, "concurrency": 64,
                      "rate_per_minute": 100000}},
    "max_request_bytes": 4096}}, environ={})
SESSION = Session(CONFIG, receive=False, service="fuzz")
KEYS = KeyRing({KEY: Identity("cus_f", "pro", "k1")})
CLIENT = TestClient(create_app(ExecService(CONFIG, KEYS, SESSION)), raise_server_exceptions=False)

text = st.text(alphabet=string.printable + "é\u202e\x00\ud800", max_size=30)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text
json_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4),
    max_leaves=12)
bodies = st.one_of(
    st.fixed_dictionaries({"command": st.sampled_from(["ok", "nope", "", "OK"]) | text},
                          optional={"args": st.lists(text | json_values, max_size=3) | json_values}),
    json_values,
)
auth = st.one_of(st.none(), st.just(f"Bearer {KEY}"), text.map(lambda t: "Bearer " + t), text)
formats = st.one_of(st.none(), st.sampled_from(["v1", "v2", "v3", "v4", ""]), text)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bodies, auth, formats, st.booleans())
def test_no_server_error_no_traceback(body: Any, authorization: str | None, fmt: str | None,
                                      raw: bool) -> None:
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization.encode("latin-1", "replace").decode("latin-1")
    content = json.dumps(body) if not raw else str(body).encode("utf-8", "surrogatepass")
    try:
        response = CLIENT.post("/api/v1/exec", content=content, headers=headers,
                               params={"format": fmt} if fmt is not None else None)
    except (UnicodeError, ValueError):  # the client refuses to send it: nothing was sent
        return
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
    assert response.headers["content-type"].startswith("application/json")
    started = response.headers["chronograph-exec-started"]
    assert started == ("true" if response.status_code == 200 else "false")
    if response.status_code == 200:
        assert response.json()["data"]["exit_code"] == 0


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.from_regex("[a-z]{0,8}", fullmatch=True), text))
def test_a_valid_request_runs_exactly_when_its_argument_passes(word: str) -> None:
    response = CLIENT.post("/api/v1/exec", content=json.dumps({"command": "ok", "args": [word]}),
                           headers={"Authorization": f"Bearer {KEY}"})  # ASCII JSON: lone surrogates too
    valid = word == "" or (len(word) <= 8 and word.isascii() and word.isalpha() and word.islower())
    assert response.status_code == (200 if valid else 422), (word, response.text)
    if valid:
        assert response.json()["data"]["exit_code"] == 0 and response.json()["telemetry"]["command"] == "ok"
