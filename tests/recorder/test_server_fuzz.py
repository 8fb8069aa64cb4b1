"""Issue 9: hypothesis over the recorder API's untrusted HTTP input (paths, query parameters, headers
including Authorization): never a 5xx, never a traceback in a body, always JSON."""

from __future__ import annotations

import string

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from otel_chronograph.recorder import FlightStore
from otel_chronograph.recorder._server import create_app

from .helpers import synthetic_lap

STORE = FlightStore(None)
for i in range(20):
    STORE.add(synthetic_lap(i))
CLIENT = TestClient(create_app(STORE, token="tok"), raise_server_exceptions=False)

text = st.text(alphabet=string.printable + "é\u202e\x00", max_size=40)
paths = st.sampled_from(["/healthz", "/openapi.json", "/api/v1/flight-recorder",
                         "/api/v1/flight-recorder/{}", "/api/v1/flight-recorder/{}/chrome-trace",
                         "/api/v1/{}", "/{}"])
ids = st.one_of(text, st.sampled_from(["req_0000000000000001", "0" * 32, "req_", "..", "%00"]))
queries = st.dictionaries(st.sampled_from(["n", "limit", "command", "status", "x", "n[]"]),
                          st.one_of(text, st.integers(-10**12, 10**12).map(str)), max_size=3)
auth = st.one_of(st.none(), st.just("Bearer tok"), text.map(lambda t: "Bearer " + t), text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(paths, ids, queries, auth)
def test_no_server_error_and_no_traceback(path: str, ident: str, query: dict[str, str],
                                          authorization: str | None) -> None:
    url = path.format(ident.replace("/", "%2F").replace("?", "%3F").replace("#", "%23"))
    headers = {}
    if authorization is not None:
        headers["Authorization"] = authorization.encode("latin-1", "replace").decode("latin-1")
    try:
        response = CLIENT.get(url, params=query, headers=headers)
    except (UnicodeError, ValueError, httpx.InvalidURL):  # the client refuses to send it: nothing was sent
        return
    assert response.status_code < 500, (url, response.status_code, response.text)
    assert "Traceback" not in response.text
    if response.status_code != 404 or response.headers.get("content-type", "").startswith("application/json"):
        assert response.headers.get("content-type", "").startswith("application/json"), response.text
