"""``chronograph billing status|flush|deliver|retry-dead-letters|report|enterprise``.

Same shape as ``chronograph recorder``: ``--config`` on the group or on each command. Only the commands
that deliver (``flush``, ``deliver``) import ``stripe``. A database error is one line naming the file.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import click

from .._cli_config import cli_config, config_option, group_config
from .._config import ChronographConfig
from .._sqlite import cli_errors
from ._enterprise import score_bill
from ._outbox import Outbox
from ._report import build_report, render
from ._sender import Sender
from ._sink import api_key_from

__all__ = ["billing"]


@contextmanager
def _outbox(cfg: ChronographConfig, path: str | None, *, read_only: bool = True, create: bool = False
            ) -> Iterator[Outbox]:
    """The outbox, for the length of a command. Only ``deliver`` (a sidecar that may start before the
    app) creates one; read commands open it read-only, so they work on a read-only or full disk."""
    where = path or cfg.billing.meter.outbox
    if not create and not Path(where).exists():
        raise click.ClickException(f"{where}: no outbox there (give --outbox or --config)")
    with cli_errors(where):
        box = Outbox(where, synchronous=cfg.billing.meter.synchronous, read_only=read_only)
        try:
            yield box
        finally:
            box.close()


def _ms(text: str | None, name: str) -> int | None:
    if not text:
        return None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"expected an ISO date or date-time, got {text!r}",
                                 param_hint=name) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp() * 1000)


def _sender(cfg: ChronographConfig, box: Outbox) -> Sender:
    """A Stripe sender for the commands that deliver; the key only from the environment."""
    key = api_key_from()
    if key is None:
        raise click.ClickException("STRIPE_API_KEY is not set: it is read only from the environment "
                                   "(never from the YAML file); nothing was sent, nothing was lost")
    from ._stripe import StripeTransport

    return Sender(box, cfg.billing.meter, StripeTransport(key, cfg.billing.meter))


_outbox_opt = click.option("--outbox", "outbox_path", type=click.Path(dir_okay=False), default=None,
                           help="outbox file (default: billing.meter.outbox from the config)")


@click.group()
@config_option
def billing(config_path: str | None) -> None:
    """Usage metering: the Stripe outbox, reports and enterprise score billing."""
    group_config(config_path)


@billing.command()
@config_option
@_outbox_opt
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
def status(config_path: str | None, outbox_path: str | None, as_json: bool) -> None:
    """Pending, delivered and dead-letter counts, the oldest pending age and the last error."""
    cfg = cli_config(config_path)
    with _outbox(cfg, outbox_path) as box:
        st = box.status()
        held = box.uncommitted()
    if as_json:
        click.echo(json.dumps({"outbox": box.path, "pending": st.pending, "due": st.due,
                               "delivered": st.delivered, "dead": st.dead, "skipped": st.skipped,
                               "oldest_pending_age_s": st.oldest_pending_age_s, "last_error": st.last_error,
                               "dead_reasons": st.dead_reasons,
                               "uncommitted": held["count"] if held else 0}))
        return
    click.echo(f"outbox      {box.path}  (billing {'on' if cfg.billing.enabled else 'off'}, "
               f"api {cfg.billing.meter.api}, event {cfg.billing.meter.event_name})")
    click.echo(f"pending     {st.pending}  (due now {st.due})")
    if held:
        click.echo(f"uncommitted {held['count']}  (held in memory by process {held['pid']}: the outbox "
                   f"could not commit them: {held['reason'] or 'retrying'})")
    click.echo(f"delivered   {st.delivered}")
    click.echo(f"dead-letter {st.dead}")
    click.echo(f"free        {st.skipped}  (zero cost, not sent)")
    age = "-" if st.oldest_pending_age_s is None else f"{st.oldest_pending_age_s:.1f}s"
    click.echo(f"oldest pending age {age}")
    for reason, n in st.dead_reasons.items():
        click.echo(f"  dead: {n} × {reason}")
    if st.last_error:
        at = datetime.fromtimestamp((st.last_error_ms or 0) / 1000, tz=timezone.utc).isoformat(
            timespec="seconds")
        click.echo(f"last error  {at}  {st.last_error}")


@billing.command()
@config_option
@_outbox_opt
@click.option("--timeout", "timeout_s", type=float, default=60.0, show_default=True,
              help="give up after this many seconds (what is left stays pending)")
def flush(config_path: str | None, outbox_path: str | None, timeout_s: float) -> None:
    """Deliver every pending row now (exit 1 if some are left)."""
    cfg = cli_config(config_path)
    with _outbox(cfg, outbox_path, read_only=False) as box:
        sender = _sender(cfg, box)
        ok = sender.shutdown(timeout_s, include_leased=True)  # drains for at most timeout_s, then releases
        st = box.status()
    c = sender.counters
    click.echo(f"delivered {c.delivered}, retried {c.retried}, dead-lettered {c.dead_lettered}; "
               f"pending {st.pending}, dead-letter {st.dead}")
    if c.last_error:
        click.echo(f"last error: {c.last_error}", err=True)
    if not ok:
        sys.exit(1)


@billing.command()
@config_option
@_outbox_opt
def deliver(config_path: str | None, outbox_path: str | None) -> None:
    """Deliver continuously from the outbox until SIGTERM/SIGINT (the sidecar for `delivery: external`).

    Leases keep it from sending a row that another deliverer (or an in-process sender) claimed; on stop it
    drains for at most `meter.shutdown_timeout_s` and releases the rest for the next start.
    """
    import signal
    import threading

    cfg = cli_config(config_path)
    with _outbox(cfg, outbox_path, read_only=False, create=True) as box:
        sender = _sender(cfg, box)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        click.echo(f"delivering from {box.path} (api {cfg.billing.meter.api}); stop with SIGTERM or Ctrl-C",
                   err=True)
        sender.start()  # full rounds every flush_interval_s pick up rows other processes committed
        stop.wait()
        sender.shutdown()
        pending = box.status().pending
    c = sender.counters
    # A clean stop with rows still pending is not a failure: they are durable in the outbox and the
    # next deliverer (or this one, restarted) sends them. Exit 0, as a service manager expects.
    click.echo(f"delivered {c.delivered}, retried {c.retried}, dead-lettered {c.dead_lettered}; "
               f"pending {pending} (kept in the outbox for the next start)", err=True)


@billing.command("retry-dead-letters")
@config_option
@_outbox_opt
@click.option("--reason", default=None, help="only rows whose reason contains this text")
def retry_dead_letters(config_path: str | None, outbox_path: str | None, reason: str | None) -> None:
    """Move dead-letter rows back to pending (attempts reset); the sender delivers them next."""
    cfg = cli_config(config_path)
    with _outbox(cfg, outbox_path, read_only=False) as box:
        n = box.retry_dead(reason)
    click.echo(f"{n} dead-letter row(s) back to pending")


@billing.command()
@config_option
@_outbox_opt
@click.option("--from", "from_", default=None, help="ISO date/date-time (inclusive), UTC if no zone")
@click.option("--to", "to", default=None, help="ISO date/date-time (exclusive)")
@click.option("--customer", default=None)
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table",
              show_default=True)
def report(config_path: str | None, outbox_path: str | None, from_: str | None, to: str | None,
           customer: str | None, fmt: str) -> None:
    """Usage and cost by customer, command and tier from the ledger."""
    cfg = cli_config(config_path)
    window = _ms(from_, "--from"), _ms(to, "--to")
    with _outbox(cfg, outbox_path) as box:
        rows = build_report(box, *window, customer)
    click.echo(render(rows, fmt), nl=False)


@billing.command()
@config_option
@_outbox_opt
@click.option("--customer", required=True)
@click.option("--from", "from_", default=None)
@click.option("--to", "to", default=None)
@click.option("--baseline", type=int, default=None, help="override: baseline score (else the first lap's)")
@click.option("--current", type=int, default=None, help="override: current score (else the last lap's)")
@click.option("--json", "as_json", is_flag=True)
def enterprise(config_path: str | None, outbox_path: str | None, customer: str, from_: str | None,
               to: str | None, baseline: int | None, current: int | None, as_json: bool) -> None:
    """Progressive per-point score pricing (bands: billing.enterprise_bands) from laps' chronograph.score."""
    cfg = cli_config(config_path)
    window = _ms(from_, "--from"), _ms(to, "--to")
    with _outbox(cfg, outbox_path) as box:
        ledger = box.ledger(*window, customer)
    scores = [float(r[6]) for r in ledger if r[6] is not None]
    bill = score_bill(customer, scores, cfg.billing.enterprise_bands, baseline, current)
    if as_json:
        click.echo(json.dumps({"customer": customer, "baseline": bill.baseline, "current": bill.current,
                               "laps_with_score": bill.laps, "total": format(bill.total, "f"),
                               "bands": [{"low": b.low, "high": b.high, "per_point": format(b.per_point, "f"),
                                          "points": p, "amount": format(a, "f")} for b, p, a in bill.lines]}))
        return
    if bill.baseline is None:
        click.echo(f"{customer}: no laps with a score in this window; nothing to bill")
        return
    click.echo(f"{customer}: baseline {bill.baseline} -> current {bill.current} ({bill.laps} scored laps)")
    for band, points, amount in bill.lines:
        click.echo(f"  {band.low:>3}-{band.high:<3} {points:>3} point(s) × {format(band.per_point, 'f'):>8}"
                   f" = {format(amount, 'f')}")
    click.echo(f"  total {format(bill.total, 'f')}")
