"""``chronograph exec`` and ``chronograph exec-server`` (click commands, loaded lazily by the CLI)."""

from __future__ import annotations

import sys

import click

from .._config import ChronographConfig, ConfigError, load_config

__all__ = ["exec_command", "exec_server"]


def _config(path: str | None) -> ChronographConfig:
    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("exec", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--command", "command", default=None, metavar="NAME",
              help="The lap's command (billing rate, thresholds). Naming an exec.commands entry makes ARGV "
                   "its arguments, and lets routing run it remotely. Default: the program's name.")
@click.option("--tier", default=None, help="Billing tier (default: billing.default_tier / CHRONOGRAPH_TIER).")
@click.option("--customer", default=None, help="Customer id for billing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print the v3 response shape (data: {exit_code: N}, telemetry) as one JSON line on "
                   "stdout after the command's output, instead of the split-time table.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="chronograph YAML (default: $CHRONOGRAPH_CONFIG, else defaults).")
@click.argument("argv", nargs=-1, type=click.UNPROCESSED)
def exec_command(command: str | None, tier: str | None, customer: str | None, as_json: bool,
                 config_path: str | None, argv: tuple[str, ...]) -> None:
    """Run ARGV as a lap (sectors spawn, run, output) and exit with its status.

    \b
      chronograph exec -- make test
      chronograph exec --command "faf score" --tier pro --customer cus_1 -- faf score .
    """
    from ._invoke import CHRONOGRAPH_FAILED, ExecError, execute

    config = _config(config_path)
    try:
        code = execute(config, argv, command, tier, customer, as_json)
    except (ExecError, ConfigError) as exc:
        click.echo(f"chronograph exec: {exc}", err=True)
        sys.exit(CHRONOGRAPH_FAILED)
    sys.exit(code)


@click.command("exec-server")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), required=True,
              help="chronograph YAML with the exec section (commands, tiers) and billing.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", default=8780, type=click.IntRange(0, 65535), show_default=True)
def exec_server(config_path: str, host: str, port: int) -> None:
    """Serve allowlisted named commands over HTTP (keys: the file named by $CHRONOGRAPH_EXEC_KEYS)."""
    try:
        from ._server import run_server
    except ImportError as exc:
        raise click.ClickException(f"exec-server needs the server extra ({exc}): "
                                   "pip install 'otel-chronograph[server]'") from None
    config = _config(config_path)
    try:
        run_server(config, host, port, announce=lambda line: click.echo(line, err=True))
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
