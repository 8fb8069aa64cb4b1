"""``--config FILE`` for the stages' command groups (``billing``, ``recorder``) and their commands.

Given to a group (``chronograph billing --config f.yaml status``) or to a command (``... status --config
f.yaml``; the command's wins), else the environment's (``CHRONOGRAPH_CONFIG``, ``OTEL_CONFIG_FILE``).
A file that is missing or invalid is an error naming it, never a silent fallback to the defaults: those
would point the command at another database.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import click

from ._config import ChronographConfig, ConfigError, load_config

__all__ = ["cli_config", "config_option", "group_config"]

_F = TypeVar("_F", bound=Callable[..., object])
_KEY = "otel_chronograph.config_path"


def config_option(f: _F) -> _F:
    """The ``--config`` option (parameter ``config_path``)."""
    return click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                        help="chronograph YAML (default: $CHRONOGRAPH_CONFIG, else $OTEL_CONFIG_FILE, "
                             "else defaults)")(f)


def group_config(config_path: str | None) -> None:
    """In a group's callback: remember its ``--config`` for the command that runs."""
    if config_path is not None:
        click.get_current_context().meta[_KEY] = config_path


def cli_config(config_path: str | None) -> ChronographConfig:
    """The configuration of the command's ``--config``, else its group's, else the environment's."""
    if config_path is None:
        ctx = click.get_current_context(silent=True)
        config_path = None if ctx is None else ctx.meta.get(_KEY)
    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
