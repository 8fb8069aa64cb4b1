"""The seed's enterprise score billing: progressive per-point pricing between a baseline and a current score.

Every whole point gained above the baseline, up to the current score, is priced by the band that holds it
(defaults: 0-85 free, 86-90 $1K, 91-95 $2K, 96-99 $5K, 100 $100K). Points no band covers cost nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from .._config import ScoreBand

__all__ = ["EnterpriseBill", "price_points", "score_bill"]


@dataclass(frozen=True, slots=True)
class EnterpriseBill:
    customer: str
    baseline: int | None
    current: int | None
    laps: int
    total: Decimal
    lines: list[tuple[ScoreBand, int, Decimal]] = field(default_factory=list)  # band, points, amount


def price_points(baseline: int, current: int, bands: tuple[ScoreBand, ...]
                 ) -> tuple[Decimal, list[tuple[ScoreBand, int, Decimal]]]:
    """Total and per-band lines for the points ``baseline+1 .. current`` (nothing if no improvement)."""
    lines: list[tuple[ScoreBand, int, Decimal]] = []
    total = Decimal(0)
    for band in sorted(bands, key=lambda b: b.low):
        lo = max(band.low, baseline + 1)
        hi = min(band.high, current)
        points = hi - lo + 1
        if points > 0:
            amount = band.per_point * points
            lines.append((band, points, amount))
            total += amount
    return total, lines


def score_bill(customer: str, scores: list[float], bands: tuple[ScoreBand, ...],
               baseline: int | None = None, current: int | None = None) -> EnterpriseBill:
    """Baseline: the first score in the window (or given); current: the last (or given). Whole points."""
    base = baseline if baseline is not None else (math.floor(scores[0]) if scores else None)
    cur = current if current is not None else (math.floor(scores[-1]) if scores else None)
    if base is None or cur is None:
        return EnterpriseBill(customer, base, cur, len(scores), Decimal(0))
    total, lines = price_points(base, cur, bands)
    return EnterpriseBill(customer, base, cur, len(scores), total, lines)
