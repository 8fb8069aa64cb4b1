"""Usage and cost from the outbox ledger, by customer, command and tier (table, CSV or JSON)."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ._outbox import Outbox

__all__ = ["ReportRow", "build_report", "render"]


@dataclass(slots=True)
class ReportRow:
    customer: str
    command: str
    tier: str
    laps: int = 0
    delivered: int = 0
    pending: int = 0
    dead: int = 0
    free: int = 0
    cost: Decimal = Decimal(0)
    billed_cost: Decimal = Decimal(0)
    value: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"customer": self.customer, "command": self.command, "tier": self.tier, "laps": self.laps,
                "delivered": self.delivered, "pending": self.pending, "dead": self.dead, "free": self.free,
                "cost": format(self.cost, "f"), "billed_cost": format(self.billed_cost, "f"),
                "value": self.value}


def build_report(outbox: Outbox, from_ms: int | None, to_ms: int | None,
                 customer: str | None = None) -> list[ReportRow]:
    """One row per (customer, command, tier): every lap in the window, whatever its state.

    ``cost`` is the rate card's cost of all laps; ``billed_cost`` only of the delivered ones."""
    rows: dict[tuple[str, str, str], ReportRow] = {}
    for cust, command, tier, state, cost, value, _score, _ts in outbox.ledger(from_ms, to_ms, customer):
        key = (cust or "(none)", command, tier)
        r = rows.get(key)
        if r is None:
            r = rows[key] = ReportRow(*key)
        r.laps += 1
        c = Decimal(cost)
        r.cost += c
        if state == "delivered":
            r.delivered += 1
            r.billed_cost += c
            r.value += int(value)
        elif state == "pending":
            r.pending += 1
        elif state == "dead":
            r.dead += 1
        else:
            r.free += 1
    return [rows[k] for k in sorted(rows)]


_COLUMNS = ("customer", "command", "tier", "laps", "delivered", "pending", "dead", "free", "cost",
            "billed_cost", "value")


def render(rows: list[ReportRow], fmt: str) -> str:
    dicts = [r.as_dict() for r in rows]
    if fmt == "json":
        total = sum((r.cost for r in rows), Decimal(0))
        return json.dumps({"rows": dicts, "total_cost": format(total, "f"),
                           "laps": sum(r.laps for r in rows)}, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(_COLUMNS), lineterminator="\n")
        w.writeheader()
        w.writerows(dicts)
        return buf.getvalue()
    table = [list(_COLUMNS), *[[str(d[c]) for c in _COLUMNS] for d in dicts]]
    widths = [max(len(row[i]) for row in table) for i in range(len(_COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    total = sum((r.cost for r in rows), Decimal(0))
    lines.append(f"total: {sum(r.laps for r in rows)} laps, cost {format(total, 'f')}")
    return "\n".join(lines) + "\n"
