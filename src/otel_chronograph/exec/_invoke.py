"""One ``chronograph exec`` invocation: resolve the command, choose where it runs, run it as one lap.

A named command (``--command NAME`` naming an ``exec.commands`` entry) takes ARGV as its arguments,
checked by the same rules as on the server, and may run remotely; anything else runs ARGV here. Exactly
one lap per invocation, whatever the route: a remote run that failed to start and ran here instead is
one lap (with an ``exec.fallback`` event), so it is billed once.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from opentelemetry import context as otel_context

from .._config import ChronographConfig
from .._lap import response
from ._carriers import context_from_environment
from ._local import finish, run_here
from ._routing import NotStarted, RemoteFailed, Router, run_remote
from ._session import Session, exec_view
from ._signals import SignalForwarder
from ._template import ArgumentError, fill

__all__ = ["CHRONOGRAPH_FAILED", "ExecError", "execute"]

CHRONOGRAPH_FAILED = 125  # chronograph itself could not run the command (as env(1) and timeout(1) say)


class ExecError(Exception):
    """chronograph refuses or cannot run the command; exit status 125 with this message."""


def _resolve(config: ChronographConfig, argv: Sequence[str], command: str | None
             ) -> tuple[str, list[str], list[str] | None, dict[str, str]]:
    """(lap command, argv to run here, arguments for a remote run or None, extra environment)."""
    named = config.exec.commands.get(command) if command is not None else None
    if named is None:
        if not argv:
            raise ExecError("nothing to run: give the command after --")
        return command or os.path.basename(argv[0]), list(argv), None, {}
    assert command is not None
    try:
        filled = fill(named.argv, named.args, list(argv))
    except ArgumentError as exc:
        raise ExecError(f"{command}: {exc}") from None
    return command, filled, list(argv), dict(named.env)


def execute(config: ChronographConfig, argv: Sequence[str], command: str | None = None,
            tier: str | None = None, customer: str | None = None, as_json: bool = False,
            router: Router | None = None) -> int:
    """Run and return the exit status (the command's, or 125 when chronograph could not run it)."""
    forwarder = SignalForwarder()  # first: the signal block must be in place before any thread starts
    try:
        lap_command, here, remote_args, extra_env = _resolve(config, argv, command)
        effective_tier = tier or config.billing.default_tier
        router = router or Router(config.exec)
        route = router.choose(effective_tier, remote_args is not None)
        try:
            session = Session(exec_view(config, as_json), receive=True)
        except OSError as exc:  # no loopback interface, no file descriptors left, ...
            raise ExecError(f"cannot start the embedded OTLP receiver on 127.0.0.1: {exc}") from None
        token = otel_context.attach(context_from_environment(os.environ))
        try:
            attributes: dict[str, Any] = {"process.executable.name": os.path.basename(here[0]),
                                          "chronograph.exec.route": route.name}
            with session.lap(lap_command, tier, customer, attributes=attributes) as handle:
                code: int | None = None
                if route.endpoint is not None and remote_args is not None:
                    try:
                        code = run_remote(session, handle.span, route, lap_command, remote_args)
                    except NotStarted as exc:
                        if not route.fallback:
                            finish(handle.span, CHRONOGRAPH_FAILED)
                            raise ExecError(f"{route.name}: the run did not start: {exc}") from None
                        router.forget(route)
                        handle.span.add_event("exec.fallback", {"endpoint": route.name, "reason": str(exc)})
                        handle.span.set_attribute("chronograph.exec.route", "local")
                        sys.stderr.write(f"chronograph exec: {route.name} did not start the run ({exc}); "
                                         "running it here\n")
                    except RemoteFailed as exc:
                        finish(handle.span, CHRONOGRAPH_FAILED)
                        raise ExecError(f"{route.name}: {exc} (not re-run: it may have started there)"
                                        ) from None
                if code is None:
                    code = run_here(session, handle.span, here, forwarder, extra_env)
        finally:
            otel_context.detach(token)
            session.close()
        if as_json:
            sys.stdout.write(json.dumps(response({"exit_code": code}, handle.telemetry, "v3")) + "\n")
            sys.stdout.flush()
        return code
    finally:
        forwarder.close()
