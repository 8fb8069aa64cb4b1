"""``chronograph demo``: a small, realistic CLI-style workload under the processor, no server needed.

Each lap is one command with four sectors (init, load, exec, format), a few flight-recorder events, a
real SQLite query inside ``exec``; some laps hit a cold cache (YELLOW/RED) and one fails (RED, error).
Run under ``opentelemetry-instrument`` it uses the SDK that auto-instrumentation configured.
"""

from __future__ import annotations

import json
import random
import sqlite3
import statistics
import sys
import time
from collections import defaultdict
from decimal import Decimal
from typing import IO, Any

import click
from opentelemetry import trace
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

from ._api import lap, sector
from ._config import ChronographConfig, DisplayConfig, load_config
from ._display import SplitTimeDisplay, wants_rich
from ._lap import Lap, response
from ._setup import install
from ._text import rich_text, safe
from ._vocab import STATUS_COLOURS, STATUSES, format_cost, format_ms
from .sources._processor import ChronographProcessor

__all__ = ["DEMO_CONFIG", "demo_command", "run_demo"]

DEMO_CONFIG: dict[str, Any] = {
    "status": {"green_ms": 100, "yellow_ms": 300,
               "commands": {"faf championship": {"green_ms": 200, "yellow_ms": 450}}},
    "billing": {"rates": {"faf score": "0.001", "faf enhance": "0.005", "faf championship": "0.01"}},
    "recorder": {"enabled": True},
}
_COMMANDS = ("faf score", "faf enhance", "faf championship")
_TIERS = ("free", "pro", "pro", "enterprise")


def _config_from_env(db: str | None = None) -> ChronographConfig:
    import os

    if os.environ.get("CHRONOGRAPH_CONFIG") or os.environ.get("OTEL_CONFIG_FILE"):
        cfg = load_config()
    else:
        cfg = load_config(DEMO_CONFIG)
    if db is not None:
        recorder = cfg.recorder.model_copy(update={"enabled": True, "persistent": True, "path": db})
        cfg = cfg.model_copy(update={"recorder": recorder})
    return cfg


def _auto_instrumented() -> ChronographProcessor | None:
    from ._distro import ChronographConfigurator

    instance = ChronographConfigurator._instance  # the SDK configurators are singletons
    return instance.processor if isinstance(instance, ChronographConfigurator) else None


def _one_lap(i: int, rng: random.Random, speed: float, db: sqlite3.Connection,
             provider: TracerProvider | None) -> tuple[Lap | None, Any]:
    def pause(lo: float, hi: float) -> None:
        time.sleep(rng.uniform(lo, hi) / 1000 / speed)

    command = _COMMANDS[i % len(_COMMANDS)]
    tier = _TIERS[i % len(_TIERS)]
    cold = i % 5 == 3
    fail = i % 11 == 7
    result: Any = None
    try:
        with lap(command, tier=tier, customer=f"cus_demo{i % 3}", score=85 + i % 15,
                 session_id=f"conv-{i // 4}", tracer_provider=provider) as handle:
            with sector("init", tracer_provider=provider):
                pause(5, 15)
                handle.event("User Message Received", model="llama3.2", tokens=6 + i)
            with sector("load", tracer_provider=provider):
                handle.event("Session Cache Lookup", hit=not cold)
                pause(200, 320) if cold else pause(15, 45)
            with sector("exec", tracer_provider=provider):
                score = rng.uniform(0.55, 0.97)
                handle.event("Embedding Classifier", confidence=round(score, 2),
                             winner="complex" if score > 0.8 else "simple")
                tracer = trace.get_tracer("chronograph.demo", tracer_provider=provider)
                with tracer.start_as_current_span("SELECT rules", kind=trace.SpanKind.CLIENT,
                                                  attributes={"db.system": "sqlite"}):
                    rows = db.execute("SELECT name, weight FROM rules WHERE weight > ?",
                                      (rng.random(),)).fetchall()
                pause(20, 70)
                if fail:
                    raise TimeoutError("engine did not answer in time")
            with sector("format", tracer_provider=provider):
                pause(3, 10)
                result = {"score": 85 + i % 15, "rules": len(rows)}
    except TimeoutError as exc:
        result = {"error": str(exc)}
    return handle.telemetry, result


_SUMMARY_HEAD = ("command", "laps", *STATUSES, "p50 ms", "max ms", "cost")


def _summary_parts(laps: list[Lap]) -> tuple[list[tuple[str, ...]], list[str]]:
    """Per-command rows (cells as text, in :data:`_SUMMARY_HEAD` order) and the lines under the table."""
    by_cmd: dict[str, list[Lap]] = defaultdict(list)
    for item in laps:
        by_cmd[item.command].append(item)
    rows = []
    for cmd, items in sorted(by_cmd.items()):
        times = [x.lap_ms for x in items]
        counts = [str(sum(1 for x in items if x.status == s)) for s in STATUSES]
        rows.append((safe(cmd), str(len(items)), *counts, f"{statistics.median(times):.1f}",
                     f"{max(times):.1f}", format_cost(sum((x.cost for x in items), Decimal(0)))))
    slow = [x for x in laps if x.status != "GREEN"]
    footer = [f"{len(laps)} laps, {len(slow)} not GREEN, {sum(1 for x in laps if x.error)} failed; "
              f"total cost {format_cost(sum((x.cost for x in laps), Decimal(0)))}"]
    for x in slow:
        footer.append(safe(f"  {x.status:<6} {x.request_id} {x.command} {format_ms(x.lap_ms, 1)}"
                           + (f" error: {x.error_message}" if x.error else "")))
    return rows, footer


def _summary(laps: list[Lap]) -> str:
    """The summary in plain ASCII (not a terminal, or NO_COLOR)."""
    rows, footer = _summary_parts(laps)
    widths = [18, 4, 5, 6, 4, 8, 8, 10]

    def line(cells: tuple[str, ...]) -> str:
        first, *rest = zip(cells, widths, strict=True)
        return " ".join([f"{first[0]:<{first[1]}}", *(f"{c:>{w}}" for c, w in rest)])

    head = line(_SUMMARY_HEAD)
    return "\n".join(["SUMMARY", head, "-" * len(head), *map(line, rows), "", *footer]) + "\n"


def _summary_rich(laps: list[Lap], stream: IO[str]) -> None:
    """The summary as a Rich table on a terminal, status columns in their colours."""
    from rich.console import Console
    from rich.table import Table

    rows, footer = _summary_parts(laps)
    table = Table(title="SUMMARY", title_justify="left", pad_edge=False)
    for name in _SUMMARY_HEAD:
        table.add_column(name, justify="left" if name == "command" else "right",
                         header_style=f"bold {STATUS_COLOURS.get(name, '')}")
    for row in rows:
        table.add_row(*(rich_text(cell) for cell in row))
    console = Console(file=stream, highlight=False, markup=False, emoji=False)
    console.print(table)
    for text in footer:
        console.print(rich_text(text))


def run_demo(laps: int = 12, speed: float = 1.0, seed: int = 7, as_json: bool = False,
             exporter: str = "none", db: str | None = None) -> list[Lap]:
    """Run the workload; print split times per lap and a summary. Returns the derived laps."""
    rng = random.Random(seed)
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE rules (name TEXT, weight REAL)")
    conn.executemany("INSERT INTO rules VALUES (?, ?)", [(f"rule{n}", n / 50) for n in range(50)])
    processor = _auto_instrumented()
    provider: TracerProvider | None = None
    own: ChronographProcessor | None = None
    if processor is None:
        provider = TracerProvider()
        exporting: list[SpanProcessor] = []
        if exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporting.append(BatchSpanProcessor(OTLPSpanExporter()))
        elif exporter == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            exporting.append(BatchSpanProcessor(ConsoleSpanExporter()))
        own = install(provider, span_processors=exporting, config=_config_from_env(db))
    display = SplitTimeDisplay(DisplayConfig(split_times=True, format="json" if as_json else "text",
                                             stream="stdout"))
    derived: list[Lap] = []
    for i in range(laps):
        telemetry, data = _one_lap(i, rng, speed, conn, provider)
        if telemetry is None:  # chronograph disabled: the work still ran
            continue
        derived.append(telemetry)
        if as_json:
            sys.stdout.write(json.dumps(response(data, telemetry)) + "\n")
        else:
            display(telemetry)
    if not as_json:
        if wants_rich(sys.stdout):
            _summary_rich(derived, sys.stdout)
        else:
            sys.stdout.write(_summary(derived))
        if db is not None and own is not None:
            sys.stdout.write(f"\nflight records in {db}: chronograph laps --db {db}; "
                             f"chronograph show <request id> --db {db}\n")
    sys.stdout.flush()
    if own is not None:
        own.shutdown()
    elif processor is not None:
        processor.force_flush()
    return derived


@click.command("demo")
@click.option("--laps", default=12, show_default=True, type=click.IntRange(1, 100_000), help="Laps to run.")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(0.01, 1000),
              help="Divide every pause by this (10 = ten times faster).")
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="One v3 JSON response per lap instead of tables.")
@click.option("--exporter", type=click.Choice(["none", "console", "otlp"]), default="none",
              show_default=True, help="Where spans go when not under opentelemetry-instrument.")
@click.option("--db", type=click.Path(dir_okay=False), default=None,
              help="Also keep the flight records in this SQLite file (for laps/show/serve/tui).")
def demo_command(laps: int, speed: float, seed: int, as_json: bool, exporter: str, db: str | None) -> None:
    """Run a CLI-style workload under chronograph and print split times and a summary."""
    from ._config import ConfigError

    try:
        run_demo(laps, speed, seed, as_json, exporter, db)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
