"""``mutations``: for configured state keys, which operations write them and in which order.

A *write* of key ``K`` is a span with span attribute ``K`` (at the span's start), or a span event named
``K`` or carrying event attribute ``K`` (at the event's time); keys match exactly (``order.status``
is not ``order.status.reason``), resource attributes are not writes. Per key: each writing operation
with its writes and distinct traces, and the orders in which operations write it within a trace
(writes sorted by time, then operation; an operation writing several times in a row counts once, so
a retry loop does not make a new order), most common first, at most ``max_sequences``.

Everything is one pass of DuckDB's JSON functions over the window's spans (``json_keys`` on the
attributes, ``from_json`` + ``unnest`` on the events of spans that have any), so 1M spans take seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from ._output import emit
from ._store import db_option, open_store, prod_scope, window_options

if TYPE_CHECKING:
    import duckdb

__all__ = ["find_mutations", "mutations_command"]

#: Write orders listed per key (most common first).
MAX_SEQUENCES = 20
_EVENTS = '[{"name": "VARCHAR", "time_ns": "BIGINT", "attributes": "JSON"}]'


def find_mutations(conn: duckdb.DuckDBPyConnection, keys: Sequence[str], where: str = "label = 'prod'",
                   params: Sequence[Any] = (), max_sequences: int = MAX_SEQUENCES) -> list[dict[str, Any]]:
    """One item per key (given order): writing operations and the write orders within traces."""
    wanted = list(dict.fromkeys(keys))
    if not wanted:
        return []
    conn.execute(f"""
        CREATE OR REPLACE TEMP TABLE _mutation_writes AS
        WITH k AS (SELECT unnest(?::VARCHAR[]) AS key),
        s AS (SELECT trace_id, operation, service, name AS span_name, start_ns, attributes, events
              FROM spans WHERE ({where})),
        attr AS (SELECT trace_id, operation, service, span_name, start_ns, json_keys(attributes) AS ks
                 FROM s WHERE attributes::VARCHAR <> '{{}}'),
        ev AS (SELECT trace_id, operation, service, span_name, unnest(from_json(events, '{_EVENTS}')) AS e
               FROM s WHERE events::VARCHAR <> '[]')
        SELECT k.key, trace_id, operation, service, span_name, start_ns AS t
        FROM attr JOIN k ON list_contains(attr.ks, k.key)
        UNION ALL
        SELECT k.key, trace_id, operation, service, span_name, e.time_ns AS t
        FROM ev JOIN k ON e.name = k.key OR list_contains(json_keys(e.attributes), k.key)""",
                 [wanted, *params])
    try:
        ops = conn.execute("""
            SELECT key, operation, any_value(service), any_value(span_name), count(*) AS n,
                   count(DISTINCT trace_id)
            FROM _mutation_writes GROUP BY key, operation ORDER BY key, n DESC, operation""").fetchall()
        seqs = conn.execute("""
            SELECT key, ord, count(*) AS n FROM (
                SELECT key, list_filter(o, lambda x, i: i = 1 OR x <> o[i - 1]) AS ord FROM (
                    SELECT key, list(operation ORDER BY t, operation) AS o
                    FROM _mutation_writes GROUP BY key, trace_id))
            GROUP BY key, ord
            QUALIFY row_number() OVER (PARTITION BY key ORDER BY n DESC, ord) <= ?
            ORDER BY key, n DESC, ord""", [max_sequences]).fetchall()
    finally:
        conn.execute("DROP TABLE IF EXISTS _mutation_writes")
    out: dict[str, dict[str, Any]] = {k: {"key": k, "operations": [], "sequences": []} for k in wanted}
    for key, op, service, name, writes, traces in ops:
        out[key]["operations"].append({"operation": op, "service": service, "span_name": name,
                                       "writes": writes, "traces": traces})
    for key, order, traces in seqs:
        out[key]["sequences"].append({"order": list(order), "traces": traces})
    return list(out.values())


@click.command("mutations")
@click.option("--key", "keys", multiple=True, required=True,
              help="A span attribute key, event attribute key or event name (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the JSON shape.")
@click.option("--max-sequences", default=MAX_SEQUENCES, show_default=True, type=click.IntRange(min=0),
              help="Write orders listed per key (most common first).")
@db_option()  # _store's decorators are typed Any
@window_options
def mutations_command(keys: tuple[str, ...], as_json: bool, max_sequences: int, db: str,
                      since: str | None, until: str | None) -> None:
    """Which operations write each key (attribute or event), how often, and in which order per trace."""
    where, params = prod_scope(since, until)
    with open_store(db, read_only=True) as conn:
        result = find_mutations(conn, keys, where, params, max_sequences)
    if as_json:
        emit(result, True)
        return
    for i, item in enumerate(result):
        click.echo(("\n" if i else "") + f"key {item['key']!r}:")
        emit(item["operations"], False, ("operation", "writes", "traces"), empty="  never written")
        if item["sequences"]:
            click.echo()
            emit([{"traces": s["traces"], "order": " -> ".join(s["order"])} for s in item["sequences"]],
                 False, ("traces", "order"))
