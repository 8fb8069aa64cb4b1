"""Latency statistics shared by the flight recorder and insights: per-key sorted samples with median
and p95, and the comparison of one value against that history (the anomaly flag)."""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from typing import Any

__all__ = ["History", "compare_to_history", "median", "percentile"]


def median(values: list[float]) -> float:
    """Median of sorted ``values`` (0.0 when empty)."""
    n = len(values)
    if not n:
        return 0.0
    mid = n // 2
    return values[mid] if n % 2 else (values[mid - 1] + values[mid]) / 2


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0-1) of sorted ``values`` (0.0 when empty)."""
    if not values:
        return 0.0
    return values[max(math.ceil(q * len(values)) - 1, 0)]


def compare_to_history(value_ms: float, count: int, median_ms: float, p95_ms: float, factor: float,
                       min_history: int) -> dict[str, Any]:
    """How one lap compares with its history: the ratio to the median, and the anomaly flag (at
    least ``factor`` x the median, given ``min_history`` samples)."""
    ratio = value_ms / median_ms if median_ms > 0 else 0.0
    return {
        "count": count,
        "median_ms": round(median_ms, 3),
        "p95_ms": round(p95_ms, 3),
        "ratio": round(ratio, 3),
        "factor": factor,
        "anomaly": count >= min_history and median_ms > 0 and value_ms >= factor * median_ms,
    }


class History:
    """Sorted lap times per command: median and p95 in O(1), updates in O(log n) + a memmove."""

    def __init__(self) -> None:
        self._by_command: dict[str, list[float]] = {}

    def add(self, command: str, lap_ms: float) -> None:
        self.update(command, lap_ms, None, 0.0)

    def remove(self, command: str, lap_ms: float) -> None:
        self.update(None, 0.0, command, lap_ms)

    def update(self, command: str | None, lap_ms: float, gone_command: str | None, gone_ms: float) -> None:
        """Add ``command``'s ``lap_ms`` and remove ``gone_command``'s ``gone_ms`` (either None: no
        such step). A full LRU takes its oldest lap out for each new one: one call for both."""
        by_command = self._by_command
        if command is not None:
            values = by_command.get(command)
            if values is None:
                by_command[command] = [lap_ms]
            else:
                insort(values, lap_ms)
        if gone_command is not None:
            values = by_command.get(gone_command)
            if values:
                i = bisect_left(values, gone_ms)
                if i < len(values) and values[i] == gone_ms:
                    del values[i]
                if not values:
                    del by_command[gone_command]

    def replace(self, by_command: dict[str, list[float]]) -> None:
        for values in by_command.values():
            values.sort()
        self._by_command = by_command

    def stats(self, command: str) -> tuple[int, float, float]:
        """(count, median, p95 by nearest rank) of the command's lap times; zeros when none."""
        values = self._by_command.get(command)
        if not values:
            return 0, 0.0, 0.0
        return len(values), median(values), percentile(values, 0.95)

