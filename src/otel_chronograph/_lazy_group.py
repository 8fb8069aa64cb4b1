"""A click group whose commands are imported only when used: fast start, optional extras."""

from __future__ import annotations

import importlib
from collections.abc import Mapping

import click

__all__ = ["LazyGroup"]


class LazyGroup(click.Group):
    """Commands from ``lazy`` ("name" -> "module:attribute"); a missing extra is a one-line error."""

    def __init__(self, *args: object, lazy: Mapping[str, str] = {}, extra: str = "all",
                 **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy
        self.extra = extra

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in self.lazy:
            return found
        module, attr = self.lazy[cmd_name].split(":")
        try:
            return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
        except ImportError as exc:
            where = f"{ctx.command_path} {cmd_name}".removeprefix("chronograph ")
            raise click.ClickException(
                f"'{where}' is not available: {exc}. Install it with "
                f"pip install 'otel-chronograph[{self.extra}]'") from None
