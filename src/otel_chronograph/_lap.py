"""The derived lap: what every sink receives and what ``lap.telemetry`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

__all__ = ["Lap", "LapEvent", "SectorSpan", "response"]

Status = Literal["GREEN", "YELLOW", "RED"]
ResponseFormat = Literal["v1", "v2", "v3"]


@dataclass(frozen=True, slots=True)
class LapEvent:
    """A flight-recorder milestone: a span event on the lap span or a descendant."""

    name: str
    timestamp_ns: int
    elapsed_ms: float
    sector: str | None
    span_name: str
    attributes: dict[str, Any]


@dataclass(frozen=True, slots=True)
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
    events: list[LapEvent] = field(default_factory=list)
    spans: list[SectorSpan] = field(default_factory=list)
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
