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

__all__ = ["SplitTimeDisplay", "render_plain", "render_rich"]

_STATUS_STYLE = {"GREEN": "bold green", "YELLOW": "bold yellow", "RED": "bold red"}
_RULE_WIDTH = 44


def _ms(value: float) -> str:
    return f"{value:7.1f}ms"


def render_plain(lap: Lap) -> str:
    """ASCII table: one row per sector, Other when non-zero, then LAP TIME with status and request id."""
    rule = "=" * _RULE_WIDTH
    title = f"{lap.command.upper()} - Chronograph"
    rows = [title, rule]
    for i, (name, ms) in enumerate(lap.sectors.items(), start=1):
        rows.append(f"Sector {i}: {name:<18.18} [{_ms(ms)}]")
    if lap.other_ms > 0:
        rows.append(f"{'Other':<28} [{_ms(lap.other_ms)}]")
    rows.append(rule)
    flag = " ERROR" if lap.error else ""
    rows.append(f"LAP TIME: {lap.lap_ms:.1f}ms {lap.status}{flag}")
    rows.append(f"Request: {lap.request_id}")
    if lap.cost:
        rows.append(f"Cost: {format(lap.cost, 'f')} ({lap.tier})")
    rows.append(rule)
    return "\n".join(rows) + "\n"


def render_rich(lap: Lap, stream: IO[str]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{lap.command.upper()} - Chronograph", title_justify="left",
                  show_header=False, box=None, pad_edge=False)
    table.add_column("sector")
    table.add_column("ms", justify="right")
    table.add_column("bar")
    total = lap.lap_ms or 1.0
    for i, (name, ms) in enumerate(lap.sectors.items(), start=1):
        table.add_row(f"Sector {i}: {name}", f"{ms:.1f}ms", "█" * max(1, round(20 * ms / total)))
    if lap.other_ms > 0:
        table.add_row("Other", f"{lap.other_ms:.1f}ms", "░" * round(20 * lap.other_ms / total))
    style = _STATUS_STYLE[lap.status]
    table.add_row("[bold]LAP TIME[/]", f"[bold]{lap.lap_ms:.1f}ms[/]",
                  f"[{style}]{lap.status}[/]" + (" [red]ERROR[/]" if lap.error else ""))
    table.add_row("Request", lap.request_id, f"cost {format(lap.cost, 'f')} ({lap.tier})")
    Console(file=stream, highlight=False).print(table)


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
            elif out.isatty() and not os.environ.get("NO_COLOR"):
                render_rich(lap, out)
            else:
                out.write(render_plain(lap))
            out.flush()
