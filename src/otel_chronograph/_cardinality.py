"""Attribute sets per instrument, capped the way the OpenTelemetry metrics SDK specification caps them.

A lap's command comes from the application (a route, a span name, a baggage value): 50,000 distinct
commands would otherwise mean 50,000 streams per instrument, kept forever (issue 9 measured +322 MiB
and a 5-second collection). Past the limit, points go to the overflow set
``{"otel.metric.overflow": true}``, so totals stay right while the per-command split is lost, and the
points that overflowed are counted (``chronograph.metrics.overflow``). The limit counts real attribute
sets: ``limit`` distinct sets never overflow (the specification's guarantee); the overflow set comes on
top.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Callable, Hashable, Sequence
from decimal import Decimal
from math import inf
from typing import Any, Generic, Protocol, TypeVar

from ._lap import Lap

__all__ = ["COST_KEYS", "DEFAULT_CARDINALITY_LIMIT", "LAP_KEYS", "OVERFLOW_ATTRIBUTES", "SECTOR_KEYS",
           "CappedSets", "LapStreams"]

DEFAULT_CARDINALITY_LIMIT = 2000  # the specification's default
OVERFLOW_ATTRIBUTES: dict[str, Any] = {"otel.metric.overflow": True}
_OVERFLOW = object()  # the overflow set's key: equal to no attribute tuple
_ZERO = Decimal(0)  # compared with a lap's cost: an int would be converted to a Decimal every lap

V = TypeVar("V")


class CappedSets(Generic[V]):
    """One instrument's attribute sets, at most ``limit`` of them plus the overflow set.

    ``get(key)`` returns the entry for an attribute tuple (values in the order of ``names``), made by
    ``make(attributes)`` on first use. Once ``limit`` sets exist, a new tuple gets the overflow entry
    and ``overflowed`` counts the point. Sets are never forgotten: cumulative readers report them for
    the life of the process (the SDK's own storage keeps them too).
    """

    __slots__ = ("admitted", "entries", "limit", "make", "names", "overflowed")

    def __init__(self, names: Sequence[str], limit: int, make: Callable[[dict[str, Any]], V]) -> None:
        if limit < 1:
            raise ValueError("cardinality limit must be at least 1")
        self.names = tuple(names)
        self.limit = limit
        self.make = make
        self.entries: dict[Hashable, V] = {}
        self.admitted = 0
        self.overflowed = 0

    def get(self, key: tuple[str, ...]) -> V:
        entry = self.entries.get(key)
        return entry if entry is not None else self._admit(key)

    def _admit(self, key: tuple[str, ...]) -> V:
        if self.admitted < self.limit:
            self.admitted += 1
            entry = self.entries[key] = self.make(dict(zip(self.names, key, strict=True)))
            return entry
        self.overflowed += 1
        overflow = self.entries.get(_OVERFLOW)
        if overflow is None:
            overflow = self.entries[_OVERFLOW] = self.make(dict(OVERFLOW_ATTRIBUTES))
        return overflow


def _relock(ref: weakref.ref[LapStreams[Any, Any]]) -> None:
    streams = ref()
    if streams is not None:
        streams.lock = threading.Lock()


class Entry(Protocol):
    def add(self, value: Any, /) -> None: ...


H = TypeVar("H", bound=Entry)
C = TypeVar("C", bound=Entry)

LAP_KEYS = ("chronograph.command", "chronograph.status", "chronograph.tier")
SECTOR_KEYS = ("chronograph.command", "chronograph.sector")
COST_KEYS = ("chronograph.command", "chronograph.tier")


class LapStreams(Generic[H, C]):
    """The attribute sets a lap feeds (lap duration, sector durations, cost), each capped, and what a lap
    adds to them. Entries are the in-process accumulators or, without the SDK hook, per-point
    recorders: the keys, the cap and the checks are the same either way."""

    def __init__(self, limit: int, lap: Callable[[dict[str, Any]], H], sector: Callable[[dict[str, Any]], H],
                 cost: Callable[[dict[str, Any]], C]) -> None:
        self.laps: CappedSets[H] = CappedSets(LAP_KEYS, limit, lap)
        self.sectors: CappedSets[H] = CappedSets(SECTOR_KEYS, limit, sector)
        self.costs: CappedSets[C] = CappedSets(COST_KEYS, limit, cost)
        self.lock = threading.Lock()
        self.reported = False  # the overflow counter is registered once per provider
        if hasattr(os, "register_at_fork"):  # a fork mid-record must not leave the child's lock held
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _relock(ref))

    def overflowed(self) -> list[tuple[str, int]]:
        return [("chronograph.lap.duration", self.laps.overflowed),
                ("chronograph.sector.duration", self.sectors.overflowed),
                ("chronograph.cost", self.costs.overflowed)]

    def record(self, lap: Lap) -> None:
        """One lap: its duration, one point per sector, its cost. Like the SDK, non-finite and negative
        values are not recorded (the SDK logs and drops them)."""
        command = lap.command
        cost = lap.cost
        cost_ok = cost.is_finite() and cost >= _ZERO
        lock = self.lock
        lock.acquire()  # not ``with``: that costs twice as much, and this runs for every lap
        try:
            ms = lap.lap_ms
            if 0 <= ms < inf:
                key: tuple[str, ...] = (command, lap.status, lap.tier)
                laps = self.laps
                entry = laps.entries.get(key)
                (entry if entry is not None else laps._admit(key)).add(ms)
            sectors = self.sectors
            entries = sectors.entries
            for name, ms in lap.sectors.items():
                if 0 <= ms < inf:
                    key = (command, name)
                    entry = entries.get(key)
                    (entry if entry is not None else sectors._admit(key)).add(ms)
            if cost_ok:
                key = (command, lap.tier)
                costs = self.costs
                total = costs.entries.get(key)
                (total if total is not None else costs._admit(key)).add(cost)
        finally:
            lock.release()
