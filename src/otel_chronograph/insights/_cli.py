"""``chronograph insights``: a click group whose commands load lazily, each from its own module."""

from __future__ import annotations

import click

from .._lazy_group import LazyGroup
from ._schema import DEFAULT_DB

# command -> "module:attribute"; each command's module imports DuckDB only when it runs.
_LAZY: dict[str, str] = {
    name: f"otel_chronograph.insights.{module}" for name, module in {
        "ingest": "_ingest:ingest_command",
        "report": "_report:report_command",
        "anomalies": "_anomalies:anomalies_command",
        "regressions": "_regressions:regressions_command",
        "correlations": "_correlations:correlations_command",
        "flows": "_flows:flows_group",
        "coverage": "_coverage:coverage_command",
        "mutations": "_mutations:mutations_command",
        "gen-tests": "_gentests:gen_tests_command",
        "replay": "_replay:replay_command",
        "monitor": "_monitor:monitor_command",
    }.items()
}


@click.group(cls=LazyGroup, lazy=_LAZY, extra="insights", help=(
    "Reports, anomalies, regressions, flow checks, coverage, generated tests and replay from traces.\n\n"
    f"Every command works on an embedded DuckDB store (--db, default {DEFAULT_DB})."))
def insights() -> None:
    """The group; its commands live in their own modules (``_LAZY``)."""
