"""``chronograph insights``: a click group whose commands load lazily, each from its own module."""

from __future__ import annotations

import click

from .._lazy_group import LazyGroup
from ._schema import DEFAULT_DB

# command -> "module:attribute"; each command's module imports DuckDB only when it runs.
_LAZY: dict[str, str] = {}


@click.group(cls=LazyGroup, lazy=_LAZY, extra="insights", help=(
    "Reports, anomalies, regressions, flow checks, coverage, generated tests and replay from traces.\n\n"
    f"Every command works on an embedded DuckDB store (--db, default {DEFAULT_DB})."))
def insights() -> None:
    """The group; its commands live in their own modules (``_LAZY``)."""
