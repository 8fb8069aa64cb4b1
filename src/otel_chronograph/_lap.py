"""The derived lap: what every sink receives and what ``lap.telemetry`` returns."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar, overload

from ._vocab import Status as Status  # re-exported: the engine imports it from here

__all__ = ["Lap", "LapEvent", "Lazy", "SectorSpan", "response"]

T = TypeVar("T")

ResponseFormat = Literal["v1", "v2", "v3"]


class Lazy(Sequence[T], Generic[T]):
    """A read-only list computed on first use: timelines cost nothing for laps no sink looks at.

    ``make`` returns the items, or ``(compact, item)``: plain tuples and the function that makes an
    item of one, called on the first read of the items. A sink that keeps thousands of laps (the
    flight recorder) then keeps tuples the garbage collector stops tracking, not objects it scans on
    every full pass, and checks what it must from them (:meth:`compact`) without making the items.
    """

    __slots__ = ("_compact", "_item", "_items", "_make")

    def __init__(self, make: Callable[[], list[T] | tuple[tuple[tuple[Any, ...], ...], Callable[..., T]]]
                 ) -> None:
        # Any: a subclass may build more than the items (engine._derive._Timeline builds the events too).
        self._make: Callable[[], Any] | None = make
        self._items: list[T] | None = None
        self._compact: tuple[tuple[Any, ...], ...] | None = None
        self._item: Callable[..., T] | None = None

    def _load(self) -> None:
        make = self._make
        if make is not None:
            made = make()
            if isinstance(made, tuple):
                self._item = made[1]
                self._compact = made[0]
            else:
                self._items = made
            self._make = None  # last: another thread seeing it None finds what it made

    def compact(self) -> tuple[tuple[Any, ...], ...] | None:
        """The items as plain tuples while they are kept that way and not made yet, else None."""
        if self._make is not None:
            self._load()
        compact = self._compact
        return compact if self._items is None else None

    def _get(self) -> list[T]:
        items = self._items
        if items is None:
            if self._make is not None:
                self._load()
            compact, item = self._compact, self._item  # read before _items: cleared after it is set
            items = self._items
            if items is None:
                items = [] if compact is None or item is None else [item(*c) for c in compact]
                self._items = items
                self._compact = None
        return items

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        return self._get()[index]

    def __len__(self) -> int:
        return len(self._get())

    def __iter__(self) -> Iterator[T]:
        return iter(self._get())

    def __eq__(self, other: object) -> bool:
        return list(self._get()) == list(other) if isinstance(other, Sequence) else NotImplemented

    def __repr__(self) -> str:
        return repr(self._get())


@dataclass(slots=True)
class LapEvent:
    """A flight-recorder milestone: a span event on the lap span or a descendant."""

    name: str
    timestamp_ns: int
    elapsed_ms: float
    sector: str | None
    span_name: str
    attributes: dict[str, Any]


@dataclass(slots=True)
class SectorSpan:
    """One span's interval as it counted toward a sector (for timelines and flamegraphs)."""

    sector: str | None
    name: str
    span_id: str
    parent_id: str | None
    start_ns: int
    end_ns: int
    error: bool = False


@dataclass(slots=True)
class Lap:
    """One operation's derived telemetry. Times are milliseconds; ``cost`` is exact."""

    request_id: str
    trace_id: str
    span_id: str
    command: str
    timestamp: int
    start_ns: int
    end_ns: int
    lap_ms: float
    other_ms: float
    sectors: dict[str, float]
    critical_path: dict[str, float]
    critical_other_ms: float
    status: Status
    error: bool
    tier: str
    customer: str | None
    score: float | None
    cost: Decimal
    events: Sequence[LapEvent] = field(default_factory=list)
    spans: Sequence[SectorSpan] = field(default_factory=list)
    error_message: str | None = None
    session_id: str | None = None
    service_name: str | None = None
    span_count: int = 0
    truncated: bool = False

    def sector_keys(self) -> dict[str, float]:
        """Sectors keyed ``s<position>_<name>`` as in the JSON response shape."""
        return {f"s{i}_{name}": ms for i, (name, ms) in enumerate(self.sectors.items(), start=1)}

    def to_json(self) -> dict[str, Any]:
        """The ``telemetry`` dict of SPEC.md's JSON response shape (json.dumps-able)."""
        return {
            "requestId": self.request_id,
            "traceId": self.trace_id,
            "timestamp": self.timestamp,
            "command": self.command,
            "sectors": self.sector_keys(),
            "otherMs": self.other_ms,
            "lapTime": self.lap_ms,
            "status": self.status,
            "billing": {
                "tier": self.tier,
                "cost": format(self.cost, "f"),
                "scoreImprovement": None,
            },
        }


def response(data: Any, lap: Lap | Any, format: ResponseFormat = "v3") -> dict[str, Any]:
    """Wrap an application result the way the seed's ``executeWithChronograph`` does.

    ``v1`` is the data alone (old clients), ``v2`` adds telemetry without billing, ``v3`` is everything.
    Accepts a ``Lap`` or the handle returned by ``lap()``.
    """
    telemetry = getattr(lap, "telemetry", lap)
    if format == "v1" or telemetry is None:
        return {"data": data}
    if format not in ("v2", "v3"):
        raise ValueError(f"unknown response format {format!r}: expected v1, v2 or v3")
    body = telemetry.to_json()
    if format == "v2":
        body.pop("billing")
    return {"data": data, "telemetry": body}
