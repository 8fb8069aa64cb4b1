"""The SQLite outbox: idempotent inserts, exclusive leases across connections, state moves, retention."""

from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path

from otel_chronograph.billing import Outbox, UsageRecord
from otel_chronograph.billing._outbox import now_ms


def rec(i: int, state: str = "pending", reason: str | None = None) -> UsageRecord:
    return UsageRecord(f"req_{i:016x}", "faf_usage", "cus_1", 10, now_ms(), "faf score", "pro",
                       Decimal("0.00001"), 1.0, 90.0, state, reason)


def test_insert_is_idempotent_and_wal(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    assert box.add(rec(1)) is True
    assert box.add(rec(1)) is False
    assert box._conn().execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert box._conn().execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert Outbox(tmp_path / "f.db", synchronous="full")._conn().execute(
        "PRAGMA synchronous").fetchone()[0] == 2
    assert box.status().pending == 1 and box.depth() == 1


def test_claims_are_exclusive_across_connections(tmp_path: Path) -> None:
    boxes = [Outbox(tmp_path / "o.db") for _ in range(4)]
    for i in range(400):
        boxes[0].add(rec(i))
    got: list[list[str]] = [[] for _ in boxes]

    def claim(k: int) -> None:
        while True:
            rows = boxes[k].claim(f"owner{k}", 7, lease_s=60)
            if not rows:
                return
            got[k].extend(r.identifier for r in rows)

    threads = [threading.Thread(target=claim, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    flat = [i for g in got for i in g]
    assert len(flat) == 400 and len(set(flat)) == 400


def test_state_moves_and_retention(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.db")
    for i in range(4):
        box.add(rec(i))
    box.add(rec(9, "dead", "no customer"))
    rows = box.claim("me", 10, lease_s=60)
    assert [r.identifier for r in rows] == [f"req_{i:016x}" for i in range(4)]
    assert box.claim("other", 10, lease_s=60) == []
    box.mark_delivered([rows[0].identifier])
    box.mark_retry([(rows[1].identifier, now_ms() + 60_000, "HTTP 500")], "me")
    box.mark_retry([(rows[2].identifier, 0, "stolen")], "not-the-owner")  # only the owner may do this
    box.mark_dead([(rows[3].identifier, "No such customer")])
    assert box.state_of(rows[0].identifier) == ("delivered", 1, None)
    assert box.state_of(rows[1].identifier) == ("pending", 1, "HTTP 500")
    assert box.state_of(rows[2].identifier) == ("pending", 0, None)
    st = box.status()
    assert (st.pending, st.delivered, st.dead) == (2, 1, 2)
    assert st.dead_reasons == {"no customer": 1, "No such customer": 1}
    box.release("me")
    assert [r.identifier for r in box.claim("other", 10, 60)] == [rows[2].identifier]  # rows[1] backs off
    assert box.retry_dead("customer") == 2 and box.status().dead == 0
    box.mark_delivered([rows[3].identifier])
    box._conn().execute("UPDATE usage SET done_ms=0 WHERE identifier=?", (rows[0].identifier,))
    assert box.purge_delivered(1) == 1  # only the old one
    assert box.state_of(rows[0].identifier) is None and box.state_of(rows[3].identifier) is not None
