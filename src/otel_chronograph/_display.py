"""Terminal split-time display: the seed's "Championship Chronograph" table, or one JSON line per lap.

Colour and box drawing only on a terminal without ``NO_COLOR``; otherwise plain ASCII, so logs and pipes
stay readable.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from typing import IO

from ._config import DisplayConfig
from ._lap import Lap
from ._text import rich_text, safe
from ._vocab import STATUS_COLOURS, format_cost, format_ms

__all__ = ["SplitTimeDisplay", "render_plain", "render_rich", "wants_rich"]

_RULE_WIDTH = 44


def wants_rich(stream: IO[str]) -> bool:
    """Colour and box drawing only on a terminal without ``NO_COLOR`` (https://no-color.org)."""
    return stream.isatty() and not os.environ.get("NO_COLOR")


def _ms(value: float) -> str:
    return f"{format_ms(value, 1):>9}"


def render_plain(lap: Lap) -> str:
    """ASCII table: one row per sector, Other when non-zero, then LAP TIME with status and request id.
    Names come from spans, so they are escaped (:func:`~._text.safe`): one lap, one LAP TIME row."""
    rule = "=" * _RULE_WIDTH
    rows = [f"{safe(lap.command.upper())} - Chronograph", rule]
    for i, (name, ms) in enumerate(lap.sectors.items(), start=1):
        rows.append(f"Sector {i}: {safe(name):<18.18} [{_ms(ms)}]")
    if lap.other_ms > 0:
        rows.append(f"{'Other':<28} [{_ms(lap.other_ms)}]")
    rows.append(rule)
    flag = " ERROR" if lap.error else ""
    rows.append(f"LAP TIME: {format_ms(lap.lap_ms, 1)} {lap.status}{flag}")
    rows.append(f"Request: {safe(lap.request_id)}")
    if lap.cost:
        rows.append(f"Cost: {format_cost(lap.cost)} ({safe(lap.tier)})")
    rows.append(rule)
    return "\n".join(rows) + "\n"


def render_rich(lap: Lap, stream: IO[str]) -> None:
    """The same table in colour. Every cell is a ``Text`` (never markup: a span named ``[/]`` is shown,
    not parsed)."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title=rich_text(f"{lap.command.upper()} - Chronograph"), title_justify="left",
                  show_header=False, box=None, pad_edge=False)
    table.add_column("sector")
    table.add_column("ms", justify="right")
    table.add_column("bar")
    total = lap.lap_ms or 1.0
    for i, (name, ms) in enumerate(lap.sectors.items(), start=1):
        bar = "█" * max(1, round(20 * ms / total))
        table.add_row(rich_text(f"Sector {i}: {name}"), format_ms(ms, 1), bar)
    if lap.other_ms > 0:
        table.add_row("Other", format_ms(lap.other_ms, 1), "░" * round(20 * lap.other_ms / total))
    status = Text(lap.status, style=f"bold {STATUS_COLOURS[lap.status]}")
    if lap.error:
        status.append(" ERROR", style="red")
    table.add_row(Text("LAP TIME", style="bold"), Text(format_ms(lap.lap_ms, 1), style="bold"), status)
    cost = rich_text(f"cost {format_cost(lap.cost)} ({lap.tier})")
    table.add_row("Request", rich_text(lap.request_id), cost)
    Console(file=stream, highlight=False, markup=False, emoji=False).print(table)


class SplitTimeDisplay:
    """Lap sink printing each lap as it completes (``display.format``: text or json)."""

    __name__ = "display"

    def __init__(self, config: DisplayConfig, stream: IO[str] | None = None) -> None:
        self._format = config.format
        self._stream = stream
        self._stream_name = config.stream
        self._lock = threading.Lock()

    def _out(self) -> IO[str]:
        if self._stream is not None:
            return self._stream
        return sys.stdout if self._stream_name == "stdout" else sys.stderr

    def __call__(self, lap: Lap) -> None:
        if self._format == "off":
            return
        out = self._out()
        with self._lock:
            if self._format == "json":
                out.write(json.dumps(lap.to_json()) + "\n")
            elif wants_rich(out):
                render_rich(lap, out)
            else:
                out.write(render_plain(lap))
            out.flush()
