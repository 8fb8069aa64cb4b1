"""Issue 9: hypothesis over the recorder API's untrusted HTTP input, sent straight to the real Starlette
app as ASGI requests (so no HTTP client filters anything out first): any method, path, raw query
string and headers (Authorization included, as arbitrary bytes). Never a 5xx, never a traceback in a
body, always a JSON answer, never a hang (each request has a deadline)."""

from __future__ import annotations

import asyncio
import json
import string
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from otel_chronograph.recorder import FlightStore
from otel_chronograph.recorder._server import create_app

from .helpers import synthetic_lap

_DIR = tempfile.TemporaryDirectory(prefix="chronograph-fuzz-")
STORE = FlightStore(Path(_DIR.name) / "fuzz.db")
STORE.add_many([synthetic_lap(i, command=c) for i, c in enumerate(["faf score", "a'b", "%", "é"] * 5)])
APPS = {"open": create_app(STORE, token=None), "token": create_app(STORE, token="tok")}
KNOWN = [f"req_{3:016x}", f"{1:032x}", f"{2:032X}", "req_", "..", "%00", "%2F..%2F", "9" * 5000]

text = st.text(alphabet=string.printable + "é\u202e\x00\udc80", max_size=60)
long_digits = st.sampled_from([1, 2, 3, 4, 7, 12, 19, 25, 4500]).map(lambda n: "9" * n)
ids = st.one_of(text, long_digits, st.sampled_from(KNOWN))
valid_ids = st.one_of(st.integers(0, 25).map(lambda i: f"req_{i:016x}"),
                      st.integers(0, 25).map(lambda i: f"{i:032x}"))
valid_paths = st.one_of(
    st.just("/api/v1/flight-recorder"),
    st.builds(lambda i: f"/api/v1/flight-recorder/{i}", valid_ids),
    st.builds(lambda i: f"/api/v1/flight-recorder/{i}/chrome-trace", valid_ids),
)
hostile_paths = st.one_of(
    st.builds(lambda i: f"/api/v1/flight-recorder/{i}", ids),
    st.builds(lambda i: f"/api/v1/flight-recorder/{i}/chrome-trace", ids),
    st.sampled_from(["/healthz", "/openapi.json", "/api/v1/flight-recorder/", "/api/", "/",
                     "//api/v1/flight-recorder", "/API/v1/flight-recorder"]),
    text.map(lambda t: "/" + t),
)
paths = st.one_of(valid_paths, hostile_paths)
raw_bytes = st.binary(max_size=80)
query_values = st.one_of(text, long_digits, st.integers(-10**30, 10**30).map(str),
                         st.sampled_from(["GREEN", "red", "", "1e3", " 5", "0x10", "٣"]))
query_keys = st.sampled_from(["n", "command", "status", "x", "n[]", ""])
hostile_queries = st.one_of(st.lists(st.tuples(query_keys, query_values), max_size=4).map(
    lambda kv: "&".join(f"{quote(k)}={quote(v, safe='', errors='surrogatepass')}" for k, v in kv).encode()),
    raw_bytes, st.sampled_from([b"n=\xff", b"command=\x80", b"n=" + b"9" * 4400]))
valid_queries = st.fixed_dictionaries({}, optional={
    "n": st.integers(1, 1000).map(str), "command": st.sampled_from(["faf score", "a'b", "%", "é", "nope"]),
    "status": st.sampled_from(["GREEN", "YELLOW", "RED"])}).map(
    lambda q: "&".join(f"{k}={quote(v)}" for k, v in q.items()).encode())
queries = st.one_of(valid_queries, hostile_queries)
hostile_auth = st.one_of(st.just(b"bearer tok"), st.just(b"Bearer tok "),
                         raw_bytes.map(lambda b: b"Bearer " + b), raw_bytes)
auth = st.tuples(st.just(b"authorization"), st.one_of(st.just(b"Bearer tok"), hostile_auth))
other_headers = st.tuples(st.sampled_from([b"accept", b"content-type", b"host", b"x-y"]), raw_bytes)
headers = st.one_of(st.just([(b"authorization", b"Bearer tok")]),
                    st.lists(st.one_of(auth, other_headers), max_size=4))
methods = st.sampled_from(["GET"] * 6 + ["HEAD", "POST", "OPTIONS", "DELETE", "BREW"])


async def _call(app: Any, scope: dict[str, Any]) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []
    request_done = False

    async def receive() -> dict[str, Any]:
        nonlocal request_done
        if not request_done:
            request_done = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)  # the client stays connected; the deadline below ends a hang
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start.get("headers", [])), body


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(APPS)), methods, paths, queries, headers)
def test_no_server_error_no_traceback_no_hang(app: str, method: str, path: str, query: bytes,
                                              request_headers: list[tuple[bytes, bytes]]) -> None:
    raw_path = quote(path, safe="/%", errors="surrogatepass").encode("ascii")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": raw_path, "query_string": query, "root_path": "",
             "headers": request_headers, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8765)}
    status, response_headers, body = asyncio.run(asyncio.wait_for(_call(APPS[app], scope), 20))
    event(f"{app} {method} {status}")
    assert status < 500, (method, path, query, status, body[:300])
    assert b"Traceback" not in body
    if 300 <= status < 400:  # Starlette's trailing-slash redirect: no body
        assert body == b"" and b"location" in response_headers
    elif method != "HEAD":
        assert response_headers.get(b"content-type", b"").startswith(b"application/json"), body[:200]
        doc = json.loads(body)
        assert isinstance(doc, dict)
        assert len(body) < 2_000_000
