"""``chronograph insights``: a click group whose commands load lazily, each from its own module."""

from __future__ import annotations

import importlib

import click

from ._schema import DEFAULT_DB

# command -> "module:attribute"; each command's module imports DuckDB only when it runs.
_LAZY: dict[str, str] = {}


class _InsightsGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_LAZY})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in _LAZY:
            return found
        module, attr = _LAZY[cmd_name].split(":")
        try:
            return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
        except ImportError as exc:
            raise click.ClickException(
                f"'insights {cmd_name}' is not available: {exc}. "
                "Install it with pip install 'otel-chronograph[insights]'") from None


@click.group(cls=_InsightsGroup, help=(
    "Reports, anomalies, regressions, flow checks, coverage, generated tests and replay from traces.\n\n"
    f"Every command works on an embedded DuckDB store (--db, default {DEFAULT_DB})."))
def insights() -> None:
    """The group; its commands live in their own modules (``_LAZY``)."""
