"""The Lap object, its JSON telemetry shape and the v1/v2/v3 response formats."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from otel_chronograph import Lap, response
from otel_chronograph._api import LapHandle

from .helpers import ROOT_ID, deriver, root, sec


def seed_lap(cost: str = "0.001") -> Lap:
    spans = [sec("init", 1, ROOT_ID, 0, 45), sec("load", 2, ROOT_ID, 45, 165),
             sec("exec", 3, ROOT_ID, 165, 250), sec("format", 4, ROOT_ID, 250, 300)]
    d = deriver({"billing": {"rates": {"faf score": cost}}})
    return d.derive(root(0, 300, attributes={"chronograph.tier": "pro", "chronograph.score": 99}), spans)


def test_to_json_is_the_spec_shape() -> None:
    lap = seed_lap()
    body = lap.to_json()
    assert body == {
        "requestId": "req_7f8a9b0c1d2e3f40",
        "traceId": lap.trace_id,
        "timestamp": 1763762400123,
        "command": "faf score",
        "sectors": {"s1_init": 45.0, "s2_load": 120.0, "s3_exec": 85.0, "s4_format": 50.0},
        "otherMs": 0.0,
        "lapTime": 300.0,
        "status": "RED",
        "billing": {"tier": "pro", "cost": "0.001", "scoreImprovement": None},
    }
    assert json.loads(json.dumps(body)) == body


def test_sector_keys_follow_position() -> None:
    assert list(seed_lap().sector_keys()) == ["s1_init", "s2_load", "s3_exec", "s4_format"]


@pytest.mark.parametrize(("rate", "text"), [("0.0000001", "0.0000001"), ("1E-7", "0.0000001"), ("12", "12"),
                                            ("0.10", "0.10"), ("0", "0")])
def test_cost_is_a_plain_decimal_string(rate: str, text: str) -> None:
    lap = seed_lap(rate)
    assert lap.cost == Decimal(rate)
    assert lap.to_json()["billing"]["cost"] == text


def test_response_formats() -> None:
    lap = seed_lap()
    data = {"score": 99}
    assert response(data, lap, "v1") == {"data": data}
    v2 = response(data, lap, "v2")
    assert v2["data"] == data and "billing" not in v2["telemetry"]
    assert v2["telemetry"]["requestId"] == lap.request_id
    v3 = response(data, lap)
    assert v3 == {"data": data, "telemetry": lap.to_json()}
    json.dumps(v3)
    with pytest.raises(ValueError, match="v4"):
        response(data, lap, "v4")  # type: ignore[arg-type]


def test_response_accepts_a_handle_and_no_telemetry() -> None:
    lap = seed_lap()
    handle = LapHandle.__new__(LapHandle)
    handle.telemetry = lap
    assert response(1, handle, "v3")["telemetry"] == lap.to_json()
    handle.telemetry = None
    assert response(1, handle, "v3") == {"data": 1}
