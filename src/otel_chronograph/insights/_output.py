"""How every insights command prints: ``--json`` gives the SPEC.md shape, text gives an aligned table.

One place so every command's text and JSON look alike and untrusted names are printed safely.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import click

from .._text import safe

__all__ = ["emit", "table"]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e-3 and value else f"{value:.3f}".rstrip("0").rstrip(".")
    return safe(str(value)) if value is not None else "-"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """``rows`` as a text table of ``columns`` (header first); empty rows give the header only."""
    cells = [list(columns)] + [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells)


def emit(items: Any, as_json: bool, columns: Sequence[str] = (), empty: str = "nothing found") -> None:
    """Print ``items`` as JSON (any shape) or, for a list of dicts, as a table of ``columns``."""
    if as_json:
        click.echo(json.dumps(items, indent=2, default=str))
    elif not items:
        click.echo(empty)
    else:
        click.echo(table(items, columns))
