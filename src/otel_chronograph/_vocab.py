"""The words and units every renderer shares: status names and colours, nanoseconds and milliseconds,
and how times and costs are written for people. A leaf module: it imports nothing from the package.

Costs for people are written with :data:`COST_PLACES` (6) decimals everywhere (split times, demo
summary, reports): micro-units, the unit usage is metered in (``cost_micros``), so what is shown is what
is billed, and columns line up. Machine formats (JSON, span attributes, the outbox) keep the exact
decimal string.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from functools import lru_cache
from typing import Literal

__all__ = ["COST_PLACES", "NS_PER_MS", "NS_PER_S", "STATUSES", "STATUS_COLOURS", "Status", "format_cost",
           "format_ms", "iso_timestamp"]

Status = Literal["GREEN", "YELLOW", "RED"]
STATUSES: tuple[Status, ...] = ("GREEN", "YELLOW", "RED")
# Rich / click colour names; also used by the TUI.
STATUS_COLOURS: Mapping[str, str] = {"GREEN": "green", "YELLOW": "yellow", "RED": "red"}

NS_PER_MS = 1_000_000
NS_PER_S = 1_000_000_000

COST_PLACES = 6
_COST_QUANTUM = Decimal(1).scaleb(-COST_PLACES)


def format_ms(ms: float, digits: int | None = None) -> str:
    """``45.0ms`` with ``digits`` decimals; without: ``2370ms``, ``45.5ms``, ``1.23ms``, ``0.234ms``
    (whole milliseconds from 100 up, more digits below)."""
    if digits is None:
        digits = 0 if ms >= 100 else 1 if ms >= 10 else 2 if ms >= 1 else 3
    return f"{ms:.{digits}f}ms"


def format_cost(cost: Decimal) -> str:
    """A cost for people: always :data:`COST_PLACES` decimals, rounded half-even as billing rounds."""
    try:
        return format(cost.quantize(_COST_QUANTUM, rounding=ROUND_HALF_EVEN), "f")
    except InvalidOperation:  # beyond the decimal context's 28 digits: shown exactly
        return format(cost, "f")


@lru_cache(maxsize=4096)
def _iso_second(seconds: int) -> str:
    return f"{datetime.fromtimestamp(seconds, tz=timezone.utc):%Y-%m-%dT%H:%M:%S}"


def iso_timestamp(ns: int) -> str:
    """``2026-02-20T14:32:01.000Z`` (UTC, millisecond precision) from epoch nanoseconds."""
    return f"{_iso_second(ns // NS_PER_S)}.{(ns // NS_PER_MS) % 1000:03d}Z"
