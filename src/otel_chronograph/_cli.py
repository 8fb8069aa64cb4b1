"""The ``chronograph`` command line. Subcommands of other stages load lazily (fast start, optional extras)."""

from __future__ import annotations

import sys

import click

from ._config import ConfigError, load_config
from ._lazy_group import LazyGroup
from ._version import __version__

__all__ = ["main"]

# name -> "module:attribute" of a click command, imported only when used.
_LAZY: dict[str, str] = {
    "demo": "otel_chronograph._demo:demo_command",
    "derive": "otel_chronograph._derive_cli:derive_command",
    "exec": "otel_chronograph.exec._commands:exec_command",
    "exec-server": "otel_chronograph.exec._commands:exec_server",
    "gateway": "otel_chronograph.gateway._commands:gateway",
    "billing": "otel_chronograph.billing._commands:billing",
    "insights": "otel_chronograph.insights._cli:insights",
    "laps": "otel_chronograph.recorder._commands:laps",
    "show": "otel_chronograph.recorder._commands:show",
    "serve": "otel_chronograph.recorder._commands:serve",
    "tui": "otel_chronograph.recorder._commands:tui",
}


@click.group(cls=LazyGroup, lazy=_LAZY)
@click.version_option(__version__, prog_name="chronograph")
def main() -> None:
    """Split times, status and usage billing from OpenTelemetry traces."""


@main.group()
def config() -> None:
    """Configuration tools."""


@config.command("check")
@click.argument("file", type=click.Path(dir_okay=False))
def config_check(file: str) -> None:
    """Validate a chronograph YAML file (exit 1 with the key and file named when invalid)."""
    try:
        cfg = load_config(file, environ={})
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)
    enabled = [name for name, on in (("chronograph", cfg.enabled), ("split times", cfg.display.split_times),
                                     ("billing", cfg.billing.enabled), ("recorder", cfg.recorder.enabled))
               if on]
    click.echo(f"{file}: ok ({', '.join(enabled) or 'everything off'})")

