"""``chronograph recorder laps|show|serve|tui`` (also at the top level: ``chronograph laps`` ...): the
flight recorder from the command line. Same shape as ``chronograph billing``: ``--config`` on the group
or on each command."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import click

from .._cli_config import cli_config, config_option, group_config
from .._sqlite import cli_errors
from .._text import safe
from .._vocab import STATUS_COLOURS, STATUSES
from ._record import FlightRecord
from ._render import folded_stacks, format_ms, record_document, render_text, to_chrome_trace
from ._store import FlightStore

__all__ = ["laps", "recorder", "serve", "show", "tui"]

_STATUS = click.Choice(STATUSES, case_sensitive=False)


def _open(db: str | None, config_path: str | None = None, writable: bool = False) -> FlightStore:
    """The store at ``--db`` (else recorder.path): never created by a read command; read-only unless
    ``writable`` (and then read-only anyway when the file cannot be written: serving a copy works)."""
    r = cli_config(config_path).recorder
    path = db or r.path
    if not Path(path).exists():
        raise click.ClickException(f"no flight recorder database at {path} "
                                   "(enable recorder.persistent, or pass --db)")
    max_records, retention, factor = r.max_records, r.retention_hours, r.anomaly_factor
    with cli_errors(path):
        if writable:
            try:
                return FlightStore(path, max_records=max_records, retention_hours=retention,
                                   anomaly_factor=factor)
            except sqlite3.OperationalError as exc:  # a read-only file or filesystem: serve it read-only
                if not any(w in str(exc) for w in ("readonly", "read-only", "unable to open")):
                    raise
        return FlightStore(path, max_records=max_records, retention_hours=retention, anomaly_factor=factor,
                           read_only=True)


_DB = click.option("--db", "db", type=click.Path(dir_okay=False), default=None,
                   help="SQLite database of the flight recorder (default: recorder.path of the config).")


def lap_line(record: FlightRecord, colour: bool) -> str:
    """One lap per line; the command and id come from spans, so they are escaped (never a second line,
    never a control sequence)."""
    status = f"{safe(record.status):<6}"
    if colour:
        status = click.style(status, fg=STATUS_COLOURS.get(record.status))
    when = record.iso_timestamp.replace("T", " ")[:23]
    err = "  error" if record.error else ""
    return f"{when}  {safe(record.id)}  {status}  {format_ms(record.lap_ms):>10}  {safe(record.command)}{err}"


@click.command()
@click.option("--last", "n", type=click.IntRange(1, 100_000), default=10, show_default=True,
              help="How many laps, newest first.")
@click.option("--command", "command", default=None, help="Only laps of this command.")
@click.option("--status", "status", type=_STATUS, default=None, help="Only laps with this status.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_DB
@config_option
def laps(n: int, command: str | None, status: str | None, as_json: bool, db: str | None,
         config_path: str | None) -> None:
    """List the newest recorded laps."""
    with _open(db, config_path) as store, cli_errors(store.path or "flight recorder"):
        records = store.recent(n, command, status.upper() if status else None)
    colour = sys.stdout.isatty()
    for r in records:
        click.echo(json.dumps(r.to_json()) if as_json else lap_line(r, colour))
    if not records and not as_json:
        click.echo("no laps recorded", err=True)


@click.command()
@click.argument("ident", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="The record as JSON (as the HTTP API returns it).")
@click.option("--chrome-trace", "chrome", is_flag=True, help="Chrome trace event JSON (for Perfetto).")
@click.option("--folded", is_flag=True, help="Folded stacks (for flamegraph.pl / speedscope).")
@_DB
@config_option
def show(ident: str, as_json: bool, chrome: bool, folded: bool, db: str | None,
         config_path: str | None) -> None:
    """Show one lap's timeline by request id or trace id."""
    with _open(db, config_path) as store, cli_errors(store.path or "flight recorder"):
        record = store.get(ident)
        if record is None:
            raise click.ClickException(f"no flight record {ident!r}")
        if as_json:
            click.echo(json.dumps(record_document(record, store.compare(record)), indent=2))
        elif chrome:
            click.echo(json.dumps(to_chrome_trace(record)))
        elif folded:
            click.echo(folded_stacks(record), nl=False)
        else:
            click.echo(render_text(record, store.compare(record)), nl=False)


@click.command()
@_DB
@config_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8765, type=click.IntRange(0, 65535), show_default=True)
def serve(db: str | None, host: str, port: int, config_path: str | None) -> None:
    """Serve the flight recorder HTTP API over a database (token: $CHRONOGRAPH_API_TOKEN)."""
    from ._server import run_server

    store = _open(db, config_path, writable=True)
    if not store.read_only:
        store.start_cleanup()
    mode = ", read-only" if store.read_only else ""
    click.echo(f"flight recorder API on http://{host}:{port} ({store.path}{mode})", err=True)
    try:
        run_server(store, host=host, port=port)
    finally:
        store.close()


@click.command()
@_DB
@config_option
@click.option("--url", default=None, help="Read from a flight recorder API instead of a database.")
def tui(db: str | None, url: str | None, config_path: str | None) -> None:
    """The live terminal UI: the last 10 laps; Enter opens a timeline."""
    from ._tui import FlightRecorderApp, HttpSource, StoreSource

    if db and url:
        raise click.UsageError("give --db or --url, not both")
    if url:
        FlightRecorderApp(HttpSource(url)).run()
        return
    with _open(db, config_path) as store, cli_errors(store.path or "flight recorder"):
        FlightRecorderApp(StoreSource(store)).run()


@click.group()
@config_option
def recorder(config_path: str | None) -> None:
    """The flight recorder: list, show, serve and browse recorded laps."""
    group_config(config_path)


for _command in (laps, show, serve, tui):
    recorder.add_command(_command)
