"""``flows check``: the children each operation's spans really have, against a documented sequence.

The spec is YAML, ``flows: {"<service.name>: <span name>": [child span name, ...]}``: the expected
children of every span of that operation, in start order. A span's observed children are the spans of
the same trace whose ``parent_id`` is its ``span_id``, ordered by ``start_ns`` then name (children that
start in the same nanosecond are compared in name order). The expected list is a *sequence*: a name
written twice must be observed twice. Per span:

- ``missing``: a name observed fewer times than expected (one deviation per name);
- ``extra``: a name observed more times than expected, or not expected at all (one per name);
- ``order``: the children present in both (the multiset intersection) are not in the expected order,
  i.e. the longest common subsequence of the two lists is shorter than their intersection. A span
  with only missing or extra children is therefore not *also* reported as reordered.

Children are looked up in one SQL join and grouped by distinct observed sequence, so each sequence is
compared once however many spans share it (a store of 1M spans is checked in seconds). A trace
conforms when every span of the operation in it conforms. Deviations are listed in trace-id order,
at most ``max_deviations`` per operation; ``traces - conforming`` counts every deviating trace.
The command exits 1 when any deviation is found (like a failing test), 0 otherwise.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._output import emit
from ._store import db_option, open_store, prod_scope, window_options

if TYPE_CHECKING:
    import duckdb

__all__ = ["check_flows", "compare_children", "flows_group", "load_flow_spec"]

#: Deviations listed per operation (all are counted in ``traces``/``conforming``).
MAX_DEVIATIONS = 100
_SHOWN_NAMES = 20  # names shown in an ``order`` detail before "…"
_KIND_ORDER = {"missing": 0, "extra": 1, "order": 2}


def load_flow_spec(path: str) -> dict[str, list[str]]:
    """The ``flows`` mapping of a spec file; ClickException naming the file (and key) when malformed."""
    import yaml

    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise click.ClickException(f"{path}: cannot read the flow spec: {reason}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else path
        raise click.ClickException(f"{where}: not YAML: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(doc, dict) or "flows" not in doc:
        raise click.ClickException(f"{path}: expected a mapping with key 'flows' "
                                   "(flows: {\"<service>: <span name>\": [child span name, ...]})")
    unknown = sorted(str(k) for k in doc if k != "flows")
    if unknown:
        raise click.ClickException(f"{path}: unknown key {unknown[0]!r} (only 'flows' is read)")
    flows = doc["flows"]
    if not isinstance(flows, dict) or not flows:
        raise click.ClickException(f"{path}: 'flows' must be a non-empty mapping of operation to a list "
                                   "of child span names")
    spec: dict[str, list[str]] = {}
    for op, children in flows.items():
        if not isinstance(op, str) or ": " not in op or not op.split(": ", 1)[0]:
            raise click.ClickException(f"{path}: flows key {op!r} is not an operation "
                                       "('<service.name>: <span name>')")
        if children is None:
            children = []
        if not isinstance(children, list) or not all(isinstance(c, str) for c in children):
            raise click.ClickException(f"{path}: flows[{op!r}] must be a list of child span names")
        spec[op] = list(children)
    return spec


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (one row of the DP table at a time)."""
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def _names(names: Sequence[str]) -> str:
    shown = [json.dumps(n, ensure_ascii=False) for n in names[:_SHOWN_NAMES]]
    return "[" + ", ".join(shown) + (", …" if len(names) > _SHOWN_NAMES else "") + "]"


def compare_children(expected: Sequence[str], observed: Sequence[str]) -> list[tuple[str, str]]:
    """``(kind, detail)`` deviations of ``observed`` children from ``expected`` (empty: conforms)."""
    want, got = Counter(expected), Counter(observed)
    out: list[tuple[str, str]] = []
    for name in dict.fromkeys(expected):
        if got[name] < want[name]:
            seen = f"observed {got[name]}×" if got[name] else "not observed"
            out.append(("missing", f"{json.dumps(name, ensure_ascii=False)} expected {want[name]}×, {seen}"))
    for name in dict.fromkeys(observed):
        if got[name] > want[name]:
            out.append(("extra", f"{json.dumps(name, ensure_ascii=False)} observed {got[name]}×, "
                                 f"expected {want[name]}×"))
    if list(expected) != list(observed):
        common = sum((want & got).values())
        if _lcs(expected, observed) < common:
            out.append(("order", f"expected {_names(expected)}, observed {_names(observed)}"))
    return out


def check_flows(conn: duckdb.DuckDBPyConnection, spec: Mapping[str, Sequence[str]],
                where: str = "label = 'prod'", params: Sequence[Any] = (),
                max_deviations: int = MAX_DEVIATIONS) -> list[dict[str, Any]]:
    """One item per spec operation: traces, conforming traces and (capped) deviations, spec order."""
    ops = list(spec)
    if not ops:
        return []
    # One row per span of a spec operation with its children's names as a JSON list (the grouping key).
    conn.execute(f"""
        CREATE OR REPLACE TEMP TABLE _flow_spans AS
        WITH p AS (SELECT trace_id, span_id, operation FROM spans
                   WHERE ({where}) AND list_contains(?::VARCHAR[], operation))
        SELECT p.operation, p.trace_id,
               coalesce(to_json(list(c.name ORDER BY c.start_ns, c.name)
                                FILTER (WHERE c.span_id IS NOT NULL)), '[]')::VARCHAR AS seq
        FROM p LEFT JOIN spans c ON c.trace_id = p.trace_id AND c.parent_id = p.span_id
        GROUP BY p.operation, p.trace_id, p.span_id""", [*params, ops])
    try:
        meta = {op: (service, name, traces) for op, service, name, traces in conn.execute(f"""
            SELECT operation, any_value(service), any_value(name), count(DISTINCT trace_id)
            FROM spans WHERE ({where}) AND list_contains(?::VARCHAR[], operation)
            GROUP BY operation""", [*params, ops]).fetchall()}
        found: dict[tuple[str, str], list[tuple[str, str]]] = {}
        for op, seq in conn.execute("SELECT DISTINCT operation, seq FROM _flow_spans").fetchall():
            deviations = compare_children(spec[op], json.loads(seq))
            if deviations:
                found[(op, seq)] = deviations
        bad_ops = [op for op, _ in found]
        bad_seqs = [seq for _, seq in found]
        deviating: dict[str, int] = {}
        listed: dict[str, list[tuple[str, str]]] = {}
        if found:
            conn.execute("""
                CREATE OR REPLACE TEMP TABLE _flow_bad AS
                SELECT DISTINCT k.operation, k.trace_id, k.seq FROM _flow_spans k
                JOIN (SELECT unnest(?::VARCHAR[]) AS operation, unnest(?::VARCHAR[]) AS seq) b
                  ON k.operation = b.operation AND k.seq = b.seq""", [bad_ops, bad_seqs])
            deviating = dict(conn.execute("SELECT operation, count(DISTINCT trace_id) FROM _flow_bad "
                                          "GROUP BY operation").fetchall())
            # The first traces of each (operation, sequence): enough to fill the cap in trace-id order.
            for op, trace_id, seq in conn.execute("""
                    SELECT operation, trace_id, seq FROM (
                        SELECT *, row_number() OVER (PARTITION BY operation, seq ORDER BY trace_id) AS n
                        FROM _flow_bad) WHERE n <= ? ORDER BY operation, trace_id, seq""",
                    [max_deviations]).fetchall():
                listed.setdefault(op, []).append((trace_id, seq))
    finally:
        conn.execute("DROP TABLE IF EXISTS _flow_spans")
        conn.execute("DROP TABLE IF EXISTS _flow_bad")
    out = []
    for op in ops:
        service, name, traces = meta.get(op, (op.split(": ", 1)[0], op.split(": ", 1)[-1], 0))
        items: list[dict[str, str]] = []
        seen: set[tuple[str, str, str]] = set()
        for trace_id, seq in listed.get(op, []):
            for kind, detail in found[(op, seq)]:
                if (trace_id, kind, detail) not in seen and len(items) < max_deviations:
                    seen.add((trace_id, kind, detail))
                    items.append({"trace_id": trace_id, "kind": kind, "detail": detail})
        items.sort(key=lambda d: (d["trace_id"], _KIND_ORDER[d["kind"]], d["detail"]))
        out.append({"operation": op, "service": service, "span_name": name, "traces": traces,
                    "conforming": traces - deviating.get(op, 0), "deviations": items})
    return out


@click.group("flows", help="Flow conformance: observed child sequences against documented ones.")
def flows_group() -> None:
    """The ``flows`` group (``check``)."""


@flows_group.command("check")
@click.option("--spec", "spec_path", required=True, type=click.Path(dir_okay=False),
              help='YAML: flows: {"<service>: <span name>": [child span name, ...]}')
@click.option("--json", "as_json", is_flag=True, help="Print the SPEC.md JSON shape.")
@click.option("--max-deviations", default=MAX_DEVIATIONS, show_default=True, type=click.IntRange(min=0),
              help="Deviations listed per operation (all are counted).")
@db_option()  # _store's decorators are typed Any
@window_options
def check_command(spec_path: str, as_json: bool, max_deviations: int, db: str,
                  since: str | None, until: str | None) -> None:
    """Check every span of the spec's operations; exit 1 when any deviates (0 when all conform)."""
    spec = load_flow_spec(spec_path)
    where, params = prod_scope(since, until)
    with open_store(db, read_only=True) as conn:
        result = check_flows(conn, spec, where, params, max_deviations)
    if as_json:
        emit(result, True)
    else:
        rows = [{**r, "deviating": r["traces"] - r["conforming"]} for r in result]
        emit(rows, False, ("operation", "traces", "conforming", "deviating"))
        devs = [{"operation": r["operation"], **d} for r in result for d in r["deviations"]]
        if devs:
            click.echo()
            emit(devs, False, ("operation", "trace_id", "kind", "detail"))
    sys.exit(1 if any(r["traces"] > r["conforming"] for r in result) else 0)
