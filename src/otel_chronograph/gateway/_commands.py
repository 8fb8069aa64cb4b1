"""``chronograph gateway --config FILE`` and ``chronograph gateway validate --config FILE``.

Exit status: 0 after a clean shutdown (SIGTERM or Ctrl-C: stop receiving, derive what is pending,
flush exporters and sinks) or a valid file; 1 for an invalid configuration or an endpoint that cannot
listen (one line per problem, no traceback); 2 for a usage error.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading

import click

from .._config import ConfigError

__all__ = ["gateway"]

SHUTDOWN_TIMEOUT_S = 20.0  # stop receiving, derive, drain exporters and sinks; under Kubernetes' 30 s grace


def _load(config_path: str) -> object:
    from ._config import load_gateway_config

    try:
        return load_gateway_config(config_path)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        sys.exit(1)


@click.group("gateway", invoke_without_command=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="gateway configuration (the Collector's shape: receivers, processors, exporters, service)")
@click.pass_context
def gateway(ctx: click.Context, config_path: str | None) -> None:
    """Receive OTLP, derive laps for whole traces, export every span with lap roots annotated."""
    if ctx.invoked_subcommand is not None:
        return
    if not config_path:
        raise click.UsageError("--config FILE is required (see docs/gateway.md)")
    from ._config import GatewayConfig

    cfg = _load(config_path)
    assert isinstance(cfg, GatewayConfig)
    sys.exit(_run(cfg))


@gateway.command("validate")
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False))
def validate(config_path: str) -> None:
    """Check a gateway configuration without starting (exit 1 naming each bad key)."""
    from ._config import GatewayConfig

    cfg = _load(config_path)
    assert isinstance(cfg, GatewayConfig)
    listening = [f"grpc {p.endpoint}" for p in cfg.grpc_endpoints()] + \
                [f"http {p.endpoint}" for p in cfg.http_endpoints()]
    laps = cfg.chronograph.laps
    click.echo(f"{config_path}: ok ({', '.join(listening)}; exporters: {', '.join(cfg.exporters)}; "
               f"laps.scope {laps.scope}, decision_wait {laps.decision_wait}s)")


def _run(cfg: object) -> int:
    from .._worker import Deadline
    from ._config import GatewayConfig
    from ._gateway import Gateway
    from ._receiver import TOKEN_ENV

    assert isinstance(cfg, GatewayConfig)
    level = {"warn": logging.WARNING}.get(cfg.telemetry.logs.level, cfg.telemetry.logs.level.upper())
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        gw = Gateway(cfg, token=os.environ.get(TOKEN_ENV) or None)
    except ImportError as exc:
        click.echo(f"chronograph gateway: {exc.name or exc} is not installed: "
                   "pip install 'otel-chronograph[gateway]'", err=True)
        return 1
    except (RuntimeError, ConfigError, OSError) as exc:
        click.echo(f"chronograph gateway: {exc}", err=True)
        return 1
    try:
        gw.start()
    except (RuntimeError, OSError) as exc:
        click.echo(f"chronograph gateway: {exc}", err=True)
        return 1
    where = ", ".join(f"{'grpc' if type(r).__name__.startswith('Grpc') else 'http'} {r.host}:{r.port}"
                      for r in gw.receivers)
    metrics = gw.telemetry.prometheus_port
    click.echo(f"chronograph gateway: listening on {where}"
               + (f"; metrics on :{metrics}/metrics" if metrics else "")
               + ("; bearer token required" if gw.token else ""), err=True)
    while not stop.wait(0.5):
        pass
    click.echo("chronograph gateway: shutting down (deriving pending traces, flushing exporters)", err=True)
    ok = gw.stop(Deadline(SHUTDOWN_TIMEOUT_S))
    click.echo(f"chronograph gateway: stopped: {gw.pending_at_shutdown} traces derived at shutdown; "
               f"{gw.summary()}" + ("" if ok else f"; not everything flushed in {SHUTDOWN_TIMEOUT_S:.0f}s"),
               err=True)
    return 0
