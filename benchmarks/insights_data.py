"""Synthetic production telemetry for the insights benchmark and the report's browser test.

Writes what the Collector's ``file`` exporter writes (one OTLP JSON ``TracesData`` per line), from a
seeded RNG: three services, five spans per trace (a SERVER root, a nested CLIENT call into a second
service, a database call), log-normal latencies, a few attributes per span, about 2 % errors
concentrated on one attribute value (``region=eu-3``) so correlations have something to find.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: 2026-11-02T00:00:00Z (a Monday)
START_NS = 1_793_577_600 * 1_000_000_000
SPANS_PER_TRACE = 5
_ROUTES = ["GET /orders/{id}", "POST /orders", "GET /catalog", "GET /health"]
_REGIONS = ["eu-1", "eu-2", "eu-3", "us-1"]


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    return {"key": key, "value": {"stringValue": str(value)}}


def _span(rng: random.Random, trace: str, span_id: str, parent: str | None, name: str, kind: int,
          start: int, ms: float, attrs: dict[str, Any], error: bool) -> dict[str, Any]:
    s: dict[str, Any] = {"traceId": trace, "spanId": span_id, "name": name, "kind": kind,
                         "startTimeUnixNano": str(start), "endTimeUnixNano": str(start + int(ms * 1e6)),
                         "attributes": [_attr(k, v) for k, v in attrs.items()],
                         "status": {"code": 2, "message": "boom"} if error else {}}
    if parent:
        s["parentSpanId"] = parent
    return s


def traces(n: int, seed: int = 7, span_seconds: float = 14 * 86400
           ) -> Iterator[dict[str, list[dict[str, Any]]]]:
    """``n`` traces as {service: [OTLP JSON span, ...]}, start times spread over ``span_seconds``."""
    rng = random.Random(seed)
    step = span_seconds * 1e9 / max(n, 1)
    for i in range(n):
        start = START_NS + int(i * step)
        trace = f"{rng.getrandbits(128):032x}"
        ids = [f"{rng.getrandbits(64) | 1:016x}" for _ in range(SPANS_PER_TRACE)]
        route = rng.choice(_ROUTES)
        region = rng.choice(_REGIONS)
        error = rng.random() < (0.08 if region == "eu-3" else 0.005)
        db_ms = rng.lognormvariate(1.0, 0.4)
        pay_ms = rng.lognormvariate(2.0, 0.3) + db_ms
        total = pay_ms + rng.lognormvariate(1.5, 0.3) + 1.0
        common = {"http.route": route, "region": region, "tier": rng.choice(["free", "pro"])}
        web = [
            _span(rng, trace, ids[0], None, route, 2, start, total, {**common, "http.request.method":
                  route.split()[0], "http.response.status_code": 500 if error else 200}, error),
            _span(rng, trace, ids[1], ids[0], "auth", 1, start + 200_000, 0.4, {}, False),
            _span(rng, trace, ids[2], ids[0], "payments.charge", 3, start + 700_000, pay_ms,
                  {"peer.service": "payments"}, False),
        ]
        pay = [
            _span(rng, trace, ids[3], ids[2], "charge", 2, start + 800_000, pay_ms - 0.2, common, error),
            _span(rng, trace, ids[4], ids[3], "SELECT payments", 3, start + 900_000, db_ms,
                  {"db.system": "sqlite"}, False),
        ]
        yield {"web": web, "payments": pay}


def write_otlp_json(path: Path, n_traces: int, per_line: int = 200, seed: int = 7,
                    span_seconds: float = 14 * 86400) -> int:
    """Write ``n_traces`` traces as Collector file-exporter JSON lines; returns the number of spans."""
    spans = 0
    with path.open("w") as out:
        batch: dict[str, list[dict[str, Any]]] = {}
        count = 0
        for trace in traces(n_traces, seed, span_seconds):
            for service, ss in trace.items():
                batch.setdefault(service, []).extend(ss)
                spans += len(ss)
            count += 1
            if count == per_line:
                out.write(_line(batch) + "\n")
                batch, count = {}, 0
        if batch:
            out.write(_line(batch) + "\n")
    return spans


def _line(batch: dict[str, list[dict[str, Any]]]) -> str:
    return json.dumps({"resourceSpans": [
        {"resource": {"attributes": [_attr("service.name", service)]},
         "scopeSpans": [{"scope": {"name": "bench"}, "spans": spans}]} for service, spans in batch.items()]})
