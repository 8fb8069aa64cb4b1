"""``mutations``: which operations write a key (span attribute, event attribute or event name), how
often, and the exact orders within traces."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_chronograph.engine import SpanRecord
from otel_chronograph.insights._cli import insights
from otel_chronograph.insights._mutations import find_mutations
from otel_chronograph.insights._store import open_store

from .helpers import new_id, span, store

POST, CHARGE, SHIP, CART = "web: POST /orders", "payment: charge", "worker: ship", "web: PUT /cart"


def order_trace(start_s: float, *, charges: int = 1, ship_first: bool = False,
                paid: bool = True) -> list[SpanRecord]:
    """web sets order.status as an attribute, payment as an event attribute, worker as an attribute.

    With ``ship_first`` the charge span starts before the ship span but its event comes after it.
    """
    tid = new_id()
    root = span("POST /orders", start_s, 100, trace=tid, attributes={"order.status": "created",
                                                                     "order.status.reason": "new"})
    out = [root]
    if paid:
        for c in range(charges):
            at = start_s + 0.001 + c * 0.002
            event_at = at + (0.02 if ship_first else 0.001)
            out.append(span("charge", at, 30, service="payment", trace=tid, parent=root.span_id,
                            attributes={"amount": 3, "note": "order.status"},
                            events=[("status_change", event_at, {"order.status": "paid"}),
                                    ("audit", event_at, {"who": "order.status"})]))
    out.append(span("ship", start_s + 0.01, 5, service="worker", trace=tid, parent=root.span_id,
                    attributes={"order.status": "shipped"}))
    return out


def cart_trace(start_s: float) -> list[SpanRecord]:
    return [span("PUT /cart", start_s, 5, events=[("cache.invalidate", start_s + 0.001, {}),
                                                  ("cache.invalidate", start_s + 0.002, {"n": 1})])]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    records: list[SpanRecord] = []
    for i in range(10):
        records += order_trace(i)
    for i in range(2):
        records += order_trace(20 + i, charges=2)  # a retried charge: same order as the 10
    for i in range(3):
        records += order_trace(30 + i, paid=False)
    for i in range(4):
        records += order_trace(40 + i, ship_first=True)
    for i in range(2):
        records += cart_trace(50 + i)
    path = tmp_path / "s.duckdb"
    store(path, records).close()
    store(path, order_trace(60, ship_first=True), label="test").close()  # test runs are not production
    # a resource attribute is not a write
    other = span("GET /x", 70, 1)
    other.resource = {"service.name": "web", "order.status": "x"}
    store(path, [other]).close()
    return path


def op(operation: str, writes: int, traces: int) -> dict[str, object]:
    service, _, name = operation.partition(": ")
    return {"operation": operation, "service": service, "span_name": name, "writes": writes, "traces": traces}


EXPECTED = [
    {"key": "order.status",
     "operations": [op(POST, 19, 19), op(SHIP, 19, 19), op(CHARGE, 18, 16)],
     "sequences": [{"order": [POST, CHARGE, SHIP], "traces": 12},
                   {"order": [POST, SHIP, CHARGE], "traces": 4},
                   {"order": [POST, SHIP], "traces": 3}]},
    {"key": "cache.invalidate", "operations": [op(CART, 4, 2)],
     "sequences": [{"order": [CART], "traces": 2}]},
    {"key": "never.written", "operations": [], "sequences": []},
]


def test_writes_and_orders_are_exact(db: Path) -> None:
    conn = open_store(str(db), read_only=True)
    assert find_mutations(conn, ["order.status", "cache.invalidate", "never.written", "order.status"]) \
        == EXPECTED
    assert conn.execute("SELECT count(*) FROM duckdb_tables() WHERE temporary").fetchone() == (0,)


def test_event_attribute_key_and_cap(db: Path) -> None:
    conn = open_store(str(db), read_only=True)
    [who] = find_mutations(conn, ["who"], max_sequences=1)
    assert who["operations"] == [op(CHARGE, 18, 16)]
    assert who["sequences"] == [{"order": [CHARGE], "traces": 16}]
    [status] = find_mutations(conn, ["order.status"], max_sequences=2)
    assert [s["traces"] for s in status["sequences"]] == [12, 4]


def test_window(db: Path) -> None:
    conn = open_store(str(db), read_only=True)
    start = 1_793_577_600 * 10**9
    [status] = find_mutations(conn, ["order.status"], "label = 'prod' AND start_ns >= ? AND start_ns < ?",
                              [start + 30 * 10**9, start + 40 * 10**9])
    assert status["operations"] == [op(POST, 3, 3), op(SHIP, 3, 3)]
    assert status["sequences"] == [{"order": [POST, SHIP], "traces": 3}]


def test_cli(db: Path) -> None:
    res = CliRunner().invoke(insights, ["mutations", "--db", str(db), "--json", "--key", "order.status",
                                        "--key", "cache.invalidate", "--key", "never.written"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output) == EXPECTED
    text = CliRunner().invoke(insights, ["mutations", "--db", str(db), "--key", "order.status",
                                         "--key", "nope"])
    assert text.exit_code == 0, text.output
    rows = [line.split(None, 1) for line in text.output.splitlines()]
    assert ["12", f"{POST} -> {CHARGE} -> {SHIP}"] in rows
    assert "key 'nope':\n  never written" in text.output
    missing = CliRunner().invoke(insights, ["mutations", "--db", str(db)])
    assert missing.exit_code == 2 and "--key" in missing.output


@given(st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=6))
@settings(max_examples=30, deadline=None)
def test_property_order_is_the_write_order_without_repeats(writers: list[str]) -> None:
    """One trace whose spans write ``k`` in list order: the order is that list, repeats collapsed."""
    tid = new_id()
    records = [span(name, i, 1, trace=tid, attributes={"k": i}) for i, name in enumerate(writers)]
    conn = store(Path(":memory:"), records)
    [item] = find_mutations(conn, ["k"])
    conn.close()
    collapsed = [w for i, w in enumerate(writers) if i == 0 or w != writers[i - 1]]
    assert item["sequences"] == [{"order": [f"web: {w}" for w in collapsed], "traces": 1}]
    assert sum(o["writes"] for o in item["operations"]) == len(writers)
