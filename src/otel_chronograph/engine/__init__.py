"""The lap engine: span records -> completion -> derivation -> annotation -> sinks, for every source.

Sources (``otel_chronograph.sources``) turn SDK spans, OTLP protobuf and OTLP JSON into
:class:`SpanRecord`; a completion policy says when a lap's spans are all there (live start/end tracking
in-process, ``decision_wait`` for ended-only sources); :class:`Engine` derives and runs the sinks.
"""

from __future__ import annotations

from ._assembly import Assembler, Completed
from ._derive import Deriver, lap_attributes
from ._engine import Engine, LapCallback
from ._records import EventRecord, SpanRecord
from ._rules import compile_lap_rules, compile_sector_rules
from ._scope import FoundLap, split_laps
from ._trace_laps import TraceLaps
from ._traces import PendingTrace, TraceBuffer

__all__ = [
    "Assembler",
    "Completed",
    "Deriver",
    "Engine",
    "EventRecord",
    "FoundLap",
    "LapCallback",
    "PendingTrace",
    "SpanRecord",
    "TraceBuffer",
    "TraceLaps",
    "compile_lap_rules",
    "compile_sector_rules",
    "lap_attributes",
    "split_laps",
]
