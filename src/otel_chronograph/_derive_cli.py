"""``chronograph derive``: laps from exported telemetry, offline (SPEC.md Part 2, "Span records and
sources").

Files stream through the same engine as live spans (records -> per-trace buffer -> lap scope ->
derivation), so a file written by the Collector's ``file`` exporter gives the laps the in-process
processor gave. Memory is bounded by ``laps.max_pending_traces``: past it, the trace seen least recently
is derived early (counted in the summary). A malformed line is reported as ``file:line: reason`` and
skipped; the exit status is 2 when any input was malformed.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from ._config import ChronographConfig, ConfigError, load_config
from ._lap import Lap

__all__ = ["derive_command"]


def lap_json(lap: Lap) -> dict[str, Any]:
    """The ``telemetry`` object of the response shape plus ``service``."""
    return {**lap.to_json(), "service": lap.service_name}


def lap_text(lap: Lap) -> str:
    from ._text import safe

    sectors = " ".join(f"{safe(name)}={ms:.3f}" for name, ms in lap.sectors.items())
    service = f" [{safe(lap.service_name)}]" if lap.service_name else ""
    return (f"{lap.request_id} {lap.status:<6} {lap.lap_ms:10.3f} ms  {safe(lap.command)}{service}"
            f"  other={lap.other_ms:.3f}{' ' + sectors if sectors else ''}")


@click.command("derive")
@click.argument("paths", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="chronograph YAML (laps.scope, sector and identity rules, status, rate card)")
@click.option("--format", "fmt", type=click.Choice(["json", "text"]), default="text", show_default=True)
@click.option("--db", type=click.Path(dir_okay=False), help="also store flight records in this SQLite file")
def derive_command(paths: tuple[str, ...], config_path: str | None, fmt: str, db: str | None) -> None:
    """Derive laps from OTLP JSON/protobuf files (Collector file exporter, Jaeger v3 responses)."""
    try:
        cfg = load_config(config_path if config_path else {}, environ={})
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    malformed = _run(cfg, paths, fmt, db)
    sys.exit(2 if malformed else 0)


def _run(cfg: ChronographConfig, paths: tuple[str, ...], fmt: str, db: str | None) -> int:
    from .engine import Engine, TraceLaps
    from .sources import read_records
    from .sources._files import MalformedInput

    deferred = []
    recorder = None
    if db:
        from .recorder import FlightRecorder

        try:
            # No retention purge in a batch run: an export's laps are usually older than
            # retention_hours, and a purge racing the writes deleted some of them (a live recorder
            # on the same file still applies its retention).
            recorder = FlightRecorder(cfg.recorder.model_copy(
                update={"persistent": True, "path": db, "retention_hours": 0.0}))
        except Exception as exc:  # sqlite3 / OS errors: one line, no traceback
            raise click.ClickException(f"{db}: cannot open the flight-record database: {exc}") from None
        deferred.append(recorder)
    engine = Engine(cfg, deferred_sinks=deferred)
    laps = TraceLaps(engine)
    out = sys.stdout
    on_error = MalformedInput()

    def emit(traces: Any) -> None:
        for trace in traces:
            for _, lap in laps.finish(trace):
                out.write((json.dumps(lap_json(lap)) if fmt == "json" else lap_text(lap)) + "\n")

    for path in paths:
        for batch in read_records(path, on_error):
            _, forced = laps.add(batch, force_oldest=True)
            emit(forced)
    emit(laps.buffer.due(everything=True))
    out.flush()
    from ._worker import Deadline

    engine.shutdown(Deadline(60.0))
    stats = laps.buffer.stats
    if on_error.count or stats.forced or stats.dropped_spans:
        click.echo(f"chronograph derive: {engine.laps_derived} laps from {stats.spans} spans; "
                   f"{on_error.count} malformed input(s); {stats.forced} trace(s) derived early at "
                   f"laps.max_pending_traces; {stats.dropped_spans} span(s) over laps.max_spans_per_trace",
                   err=True)
    return on_error.count
