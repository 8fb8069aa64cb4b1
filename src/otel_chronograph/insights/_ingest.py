"""``chronograph insights ingest``: exported telemetry into the store, streaming and idempotent.

Inputs: the Collector ``file`` exporter's output (OTLP JSON lines, gzip/zstd or not, or its
length-prefixed protobuf), a single OTLP JSON document, saved Jaeger ``/api/v3/traces`` responses, and
the flight recorder's SQLite file; directories are read recursively. JSON lines go to DuckDB in 16 MB chunks
of ``_CHUNK_BYTES`` (its C++ JSON reader is the fast path, see ``_otlp_sql``); a chunk it refuses is
re-read by the Python decoder, which reports each bad line as ``file:line: reason`` and keeps the good
ones. Memory is bounded by one chunk plus DuckDB's ``--memory-limit``. Rows are keyed by (trace id,
span id): ingesting the same file twice adds nothing. The exit status is 2 when any input was
malformed, as for ``chronograph derive``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import click

from ..sources import OTLPError, read_records, records_from_json
from ..sources._files import MalformedInput, open_input
from ._store import SpanRow, db_option, insert_laps, insert_spans, lap_row, open_store, span_row

if TYPE_CHECKING:
    import duckdb

    from .._config import ChronographConfig

__all__ = ["ingest_command", "ingest_paths"]

_CHUNK_BYTES = 16 * 1024 * 1024  # 8 MB: 400 MB peak RSS at 1M spans; 16: 470; 32: 630; 64: 790
_SQLITE = b"SQLite format 3\x00"
OnError = Callable[[str, int, str], None]
Advance = Callable[[int, int], None]  # (bytes of input consumed, spans read)


class _Progress:
    """A rich progress bar on a terminal; one line per file otherwise (CI logs stay readable)."""

    def __init__(self, total_bytes: int, files: int) -> None:
        import sys

        self.spans = 0
        self._bar: Any = None
        self._task: Any = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._bar = Progress(TextColumn("[bold]ingest[/] {task.description}"), BarColumn(),
                                 DownloadColumn(), TextColumn("{task.fields[spans]:,} spans"),
                                 TimeElapsedColumn(), TimeRemainingColumn(),
                                 console=Console(stderr=True), transient=False)
            self._task = self._bar.add_task(f"{files} file(s)", total=total_bytes, spans=0)
            self._bar.start()

    def advance(self, consumed: int, spans: int) -> None:
        self.spans += spans
        if self._bar is not None:
            self._bar.update(self._task, advance=consumed, spans=self.spans)

    def file_done(self, name: str, spans: int) -> None:
        if self._bar is None:
            click.echo(f"ingest: {name}: {spans:,} spans", err=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()


def _files(paths: tuple[str, ...], on_error: OnError) -> list[Path]:
    out: list[Path] = []
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith(".")))
        elif p.is_file():
            out.append(p)
        else:
            on_error(raw, 0, "no such file or directory")
    return out


def _chunks(stream: IO[bytes], scratch: Path) -> Iterator[tuple[Path, int, int]]:
    """(chunk file, its first line number, its bytes) for each ~_CHUNK_BYTES of whole lines."""
    number = 1
    lines: list[bytes] = []
    size = 0
    first = 1
    for line in stream:
        lines.append(line)
        size += len(line)
        number += 1
        if size >= _CHUNK_BYTES:
            yield _spill(lines, scratch), first, size
            lines, size, first = [], 0, number
    if lines:
        yield _spill(lines, scratch), first, size


def _spill(lines: list[bytes], scratch: Path) -> Path:
    path = scratch / "chunk.jsonl"
    with path.open("wb") as out:
        out.writelines(lines)
        if lines and not lines[-1].endswith(b"\n"):
            out.write(b"\n")
    return path


def _python_lines(conn: duckdb.DuckDBPyConnection, chunk: Path, first: int, name: str, label: str,
                  on_error: OnError) -> int:
    """The slow, precise path for a chunk DuckDB refused: every bad line reported, the rest stored."""
    rows: list[SpanRow] = []
    count = 0
    with chunk.open("rb") as lines:
        for number, line in enumerate(lines, start=first):
            text = line.strip()
            if not text:
                continue
            try:
                batch = records_from_json(json.loads(text))
            except OTLPError as exc:
                on_error(name, number, str(exc))
                continue
            except ValueError as exc:
                on_error(name, number, f"not JSON: {exc}")
                continue
            rows.extend(span_row(r, label) for r in batch)
            if len(rows) >= 20_000:
                count += len(rows)
                insert_spans(conn, rows)
                rows = []
    insert_spans(conn, rows)
    return count + len(rows)


def _json_lines(conn: duckdb.DuckDBPyConnection, stream: IO[bytes], name: str, label: str,
                on_error: OnError, advance: Advance, scratch: Path) -> int:
    from ._otlp_sql import ChunkRefused, stage_chunk

    spans = 0
    for chunk, first, size in _chunks(stream, scratch):
        try:
            n = stage_chunk(conn, str(chunk), label)
        except ChunkRefused:
            n = _python_lines(conn, chunk, first, name, label, on_error)
        spans += n
        advance(size, n)
    return spans


def _records(conn: duckdb.DuckDBPyConnection, path: Path, label: str, on_error: OnError,
             advance: Advance) -> int:
    """Protobuf files and single multi-line JSON documents: the Python decoder, in batches."""
    spans = 0
    rows: list[SpanRow] = []
    for batch in read_records(path, on_error):
        rows.extend(span_row(r, label) for r in batch)
        if len(rows) >= 20_000:
            insert_spans(conn, rows)
            spans += len(rows)
            advance(0, len(rows))
            rows = []
    insert_spans(conn, rows)
    advance(path.stat().st_size, len(rows))
    return spans + len(rows)


def _recorder(conn: duckdb.DuckDBPyConnection, path: Path, label: str, on_error: OnError,
              advance: Advance) -> int:
    """A flight-recorder SQLite file: each stored lap gives a lap row, its root and its sector spans."""
    from ..recorder._record import decode_lap

    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        rows = db.execute("SELECT seq, data FROM flight_records ORDER BY seq").fetchall()
        db.close()
    except sqlite3.Error as exc:
        on_error(str(path), 0, f"not a flight-recorder database: {exc}")
        return 0
    spans: list[SpanRow] = []
    laps: list[SpanRow] = []
    for seq, data in rows:
        try:
            lap = decode_lap(data)
        except ValueError as exc:
            on_error(str(path), seq, f"flight record {seq}: {exc}")
            continue
        laps.append(lap_row(lap, label))
        spans.extend(_lap_spans(lap, label))
    insert_spans(conn, spans)
    insert_laps(conn, laps)
    advance(path.stat().st_size, len(spans))
    return len(spans)


def _lap_spans(lap: Any, label: str) -> list[SpanRow]:
    """Span rows for a recorded lap: the root (named by its command) and its clipped sector spans."""
    from opentelemetry.trace import SpanKind

    from ..engine import SpanRecord

    resource = {"service.name": lap.service_name} if lap.service_name else {}
    trace = int(lap.trace_id, 16)
    root = SpanRecord(trace, int(lap.span_id, 16), None, lap.command, SpanKind.SERVER, lap.start_ns,
                      lap.end_ns, {"chronograph.status": lap.status, "chronograph.tier": lap.tier},
                      error=lap.error, status_message=lap.error_message, resource=resource)
    out = [span_row(root, label)]
    for s in lap.spans:
        attrs = {"chronograph.sector": s.sector} if s.sector else {}
        rec = SpanRecord(trace, int(s.span_id, 16), int(s.parent_id, 16) if s.parent_id else None, s.name,
                         SpanKind.INTERNAL, s.start_ns, s.end_ns, attrs, error=s.error, resource=resource,
                         parent_remote=False)
        out.append(span_row(rec, label))
    return out


def _ingest_file(conn: duckdb.DuckDBPyConnection, path: Path, label: str, on_error: OnError,
                 advance: Advance, scratch: Path) -> int:
    name = str(path)
    try:
        with path.open("rb") as raw:
            if raw.read(len(_SQLITE)) == _SQLITE:
                return _recorder(conn, path, label, on_error, advance)
        stream = open_input(path)
    except OTLPError as exc:
        on_error(name, 0, str(exc))
        return 0
    except OSError as exc:
        on_error(name, 0, f"cannot read: {exc.strerror or exc}")
        return 0
    with stream:
        head = stream.read(1 << 16)
        stripped = head.lstrip()
        first_line = stripped.split(b"\n", 1)[0].strip()
        json_lines = stripped[:1] in (b"{", b"[") and first_line not in (b"{", b"[")
    if not json_lines:  # protobuf, or one pretty-printed document: it is one message anyway
        return _records(conn, path, label, on_error, advance)
    try:
        with open_input(path) as stream:
            return _json_lines(conn, stream, name, label, on_error, advance, scratch)
    except (OSError, EOFError) as exc:  # a truncated gzip stream, a disk error mid-file
        on_error(name, 0, f"cannot read: {exc}")
        return 0


def ingest_paths(conn: duckdb.DuckDBPyConnection, paths: tuple[str, ...], label: str = "prod",
                 on_error: OnError | None = None, progress: bool = True) -> tuple[int, int]:
    """Ingest ``paths`` into ``conn``: (spans read, files read). ``on_error(file, line, reason)``."""
    errors = on_error or MalformedInput()
    files = _files(paths, errors)
    bar = _Progress(sum(f.stat().st_size for f in files), len(files)) if progress else None
    total = 0
    try:
        with tempfile.TemporaryDirectory(prefix="chronograph-ingest-") as scratch:
            for f in files:
                n = _ingest_file(conn, f, label, errors, bar.advance if bar else (lambda a, b: None),
                                 Path(scratch))
                total += n
                if bar:
                    bar.file_done(str(f), n)
    finally:
        if bar:
            bar.close()
    return total, len(files)


def derive_laps(conn: duckdb.DuckDBPyConnection, config: ChronographConfig, label: str = "prod") -> int:
    """Laps (``laps.scope: trace``) of every stored trace of ``label`` that has none yet; how many."""
    from ..engine import Engine, PendingTrace, TraceLaps
    from ._traces import stored_traces

    engine = Engine(config)
    laps = TraceLaps(engine)
    where = ("label = ? AND trace_id IN (SELECT trace_id FROM spans WHERE label = ? EXCEPT "
             "SELECT trace_id FROM laps WHERE label = ?)")
    rows: list[SpanRow] = []
    derived = 0
    for records in stored_traces(conn, where, [label, label, label]):
        trace = PendingTrace(records[0].trace_id)
        trace.records.extend(records)
        rows.extend(lap_row(lap, label) for _, lap in laps.finish(trace))
        if len(rows) >= 5_000:
            insert_laps(conn, rows)
            derived += len(rows)
            rows = []
    insert_laps(conn, rows)
    return derived + len(rows)


@click.command("ingest")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@db_option()
@click.option("--label", default="prod", show_default=True,
              help="Label these traces: 'prod' for production, 'test' for a test run (coverage --tests).")
@click.option("--laps/--no-laps", default=False, show_default=True,
              help="Also derive laps with the engine (laps.scope: trace) from the stored traces.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="chronograph YAML for --laps (sector and identity rules, status, rate card).")
@click.option("--memory-limit", default="2GB", show_default=True, help="DuckDB's memory limit.")
def ingest_command(paths: tuple[str, ...], db: str, label: str, laps: bool, config_path: str | None,
                   memory_limit: str) -> None:
    """Store OTLP JSON/protobuf files, Jaeger v3 JSON and flight-recorder SQLite files for insights."""
    import sys

    cfg = None
    if laps:
        from .._config import ConfigError, load_config

        try:
            cfg = load_config(config_path if config_path else {}, environ=dict(os.environ))
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
    import duckdb

    conn = open_store(db)
    try:
        conn.execute(f"SET memory_limit = '{_memory(memory_limit)}'")
        malformed = MalformedInput()
        before = _count(conn)
        started = time.perf_counter()
        spans, files = ingest_paths(conn, paths, label, malformed)
        seconds = time.perf_counter() - started
        new = _count(conn) - before
        derived = derive_laps(conn, cfg, label) if cfg is not None else 0
    except duckdb.Error as exc:  # a full disk, a file another tool broke: one line; chunks stored stay
        raise click.ClickException(f"{db}: the insights store failed: {str(exc).splitlines()[0]}") from None
    finally:
        conn.close()
    rate = spans / seconds if seconds > 0 else 0.0
    click.echo(f"chronograph insights ingest: {spans:,} spans read ({new:,} new) from {files} file(s) in "
               f"{seconds:.1f} s ({rate:,.0f} spans/s); {malformed.count} malformed input(s)"
               + (f"; {derived:,} laps derived" if cfg is not None else ""), err=True)
    sys.exit(2 if malformed.count else 0)


def _count(conn: duckdb.DuckDBPyConnection) -> int:
    row = conn.execute("SELECT count(*) FROM spans").fetchall()[0]
    return int(row[0]) if row else 0


def _memory(text: str) -> str:
    """A DuckDB size ('512MB', '2GB'); anything else is a usage error, never SQL."""
    import re

    if not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)", text.strip(), re.IGNORECASE):
        raise click.BadParameter(f"{text!r}: expected a size such as 512MB or 2GB",
                                 param_hint="--memory-limit")
    return text.strip()
