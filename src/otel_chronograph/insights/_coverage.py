"""``coverage``: declared handlers against what production ran and what the tests ran.

The handlers file lists one operation (``"<service.name>: <span name>"``) per line; blank lines and
``#`` comments (a ``#`` at the start of a line or after white space) are ignored, a handler listed
twice counts once. Production counts are the spans of each operation in the window. Test-run counts
come from two places, added together: ``--tests`` files (OTLP JSON/protobuf as ``derive`` reads them,
streamed, only a counter of operations kept) and spans ingested with label ``test`` (all of them: a
test run's time has nothing to do with the production window). Without either, test figures are
``None``. ``undeclared`` lists the production operations that look like handlers (SERVER or CONSUMER
spans, or spans whose parent is in another process or absent) but are not declared, most run first;
internal and client spans are never handlers, so they are not listed.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..sources._files import MalformedInput
from ._output import emit
from ._schema import operation
from ._store import _utf8, db_option, open_store, prod_scope, window_options

if TYPE_CHECKING:
    import duckdb

__all__ = ["count_operations", "coverage", "coverage_command", "read_handlers"]

#: Undeclared handler-like operations listed (most run first).
MAX_UNDECLARED = 100


def read_handlers(path: str) -> list[str]:
    """Declared operations, file order, duplicates dropped; ClickException naming ``file:line``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.ClickException(f"{path}: cannot read the handlers file: {reason}") from None
    handlers: dict[str, None] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if line.startswith("#"):
            continue
        cut = next((i for i, c in enumerate(line) if c == "#" and line[i - 1].isspace()), len(line))
        line = line[:cut].strip()
        if not line:
            continue
        service, sep, name = line.partition(": ")
        if not sep or not service.strip() or not name.strip():
            raise click.ClickException(f"{path}:{number}: {line!r} is not an operation "
                                       "('<service.name>: <span name>')")
        handlers[line] = None
    return list(handlers)


def count_operations(paths: Sequence[str], on_error: Any) -> Counter[str]:
    """Spans per operation in OTLP files, streamed (``on_error(file, line, reason)`` for bad input)."""
    from ..sources import read_records

    counts: Counter[str] = Counter()
    for path in paths:
        for batch in read_records(path, on_error):
            counts.update(operation(_utf8(str(r.resource.get("service.name") or "unknown_service")),
                                    _utf8(r.name)) for r in batch)
    return counts


def coverage(conn: duckdb.DuckDBPyConnection, handlers: Sequence[str],
             test_operations: Mapping[str, int] | None, where: str = "label = 'prod'",
             params: Sequence[Any] = (), max_undeclared: int = MAX_UNDECLARED) -> dict[str, Any]:
    """Declared handlers with their production and test-run span counts, and undeclared handlers."""
    declared = list(dict.fromkeys(handlers))
    prod = dict(conn.execute(f"""
        SELECT operation, count(*) FROM spans WHERE ({where}) AND list_contains(?::VARCHAR[], operation)
        GROUP BY operation""", [*params, declared]).fetchall())
    stored_tests = dict(conn.execute("""
        SELECT operation, count(*) FROM spans WHERE label = 'test' GROUP BY operation""").fetchall())
    tests: Counter[str] | None = None
    if test_operations is not None or stored_tests:
        tests = Counter(stored_tests)
        tests.update(test_operations or {})
    rows = []
    for op in declared:
        service, _, name = op.partition(": ")
        rows.append({"operation": op, "service": service, "span_name": name, "production": prod.get(op, 0),
                     "tests": None if tests is None else tests.get(op, 0)})
    undeclared = [{"operation": op, "production": n} for op, n in conn.execute(f"""
        SELECT operation, count(*) AS n FROM spans
        WHERE ({where}) AND NOT list_contains(?::VARCHAR[], operation)
          AND (kind IN ('SERVER', 'CONSUMER') OR parent_remote)
        GROUP BY operation ORDER BY n DESC, operation LIMIT ?""",
        [*params, declared, max_undeclared]).fetchall()]
    return {"declared": len(declared),
            "executed_in_production": sum(1 for r in rows if r["production"]),
            "executed_in_tests": None if tests is None else sum(1 for r in rows if r["tests"]),
            "handlers": rows, "undeclared": undeclared}


@click.command("coverage")
@click.option("--handlers", "handlers_path", required=True, type=click.Path(dir_okay=False),
              help="Declared operations, one '<service.name>: <span name>' per line (# comments).")
@click.option("--tests", "tests_paths", multiple=True, type=click.Path(dir_okay=False),
              help="OTLP JSON/protobuf files a test run exported (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON shape.")
@db_option()  # _store's decorators are typed Any
@window_options
def coverage_command(handlers_path: str, tests_paths: tuple[str, ...], as_json: bool, db: str,
                     since: str | None, until: str | None) -> None:
    """Declared handlers vs executed in production vs executed in test runs (exit 2: bad test input)."""
    handlers = read_handlers(handlers_path)
    on_error = MalformedInput()

    ran = count_operations(tests_paths, on_error) if tests_paths else None
    where, params = prod_scope(since, until)
    with open_store(db, read_only=True) as conn:
        result = coverage(conn, handlers, ran, where, params)
    if as_json:
        emit(result, True)
    else:
        tested = result["executed_in_tests"]
        click.echo(f"{result['declared']} declared handlers: {result['executed_in_production']} executed "
                   f"in production, " + ("no test runs given" if tested is None
                                         else f"{tested} executed in tests"))
        click.echo()
        emit(result["handlers"], False, ("operation", "production", "tests"), empty="no handlers declared")
        if result["undeclared"]:
            click.echo("\nundeclared handlers seen in production:")
            emit(result["undeclared"], False, ("operation", "production"))
    if on_error.count:
        click.echo(f"chronograph insights coverage: {on_error.count} malformed input(s)", err=True)
        sys.exit(2)
