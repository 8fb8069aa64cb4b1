"""The child's environment: a merged copy of ours with the trace carried in and telemetry pointed at us.

OpenTelemetry's environment-variable carriers (``TRACEPARENT``, ``TRACESTATE``, ``BAGGAGE``; any
configured propagator's keys, upper-cased) go into a *copy* of the environment, never a replacement:
the known pitfall is a child that loses ``PATH`` or its own settings. Traces are pointed at the
embedded receiver (generic and traces-specific variables, both, so an inherited
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` cannot bypass it); metrics and logs are pinned to where they
would have gone without us, so they never arrive at a trace receiver.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping

from opentelemetry import propagate
from opentelemetry.context import Context

__all__ = ["CARRIERS", "child_environment", "context_from_environment", "inject_environment"]

CARRIERS = ("TRACEPARENT", "TRACESTATE", "BAGGAGE")
_GENERIC_ENDPOINT = "OTEL_EXPORTER_OTLP_ENDPOINT"
_GENERIC_PROTOCOL = "OTEL_EXPORTER_OTLP_PROTOCOL"
_HTTP = "http/protobuf"


def _key(name: str) -> str:
    """The environment variable of a propagator key, as the OpenTelemetry env-carrier spec names it."""
    out = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name).upper()
    return "_" + out if not out or out[0].isdigit() else out


def context_from_environment(environ: Mapping[str, str]) -> Context:
    """The context our own environment carries (a parent ``chronograph exec``, a CI system)."""
    carrier = {name.lower(): environ[name] for name in CARRIERS if environ.get(name)}
    return propagate.extract(carrier) if carrier else Context()


def inject_environment(env: MutableMapping[str, str], context: Context) -> None:
    """Replace the carriers in ``env`` with what the configured propagators inject for ``context``."""
    for name in CARRIERS:
        env.pop(name, None)
    carrier: dict[str, str] = {}
    propagate.inject(carrier, context=context)
    for name, value in carrier.items():
        env[_key(name)] = value


def _pin(env: MutableMapping[str, str], signal: str) -> None:
    """Keep a signal's exporter where it pointed before the generic variables were changed."""
    endpoint_var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_ENDPOINT"
    protocol_var = f"OTEL_EXPORTER_OTLP_{signal.upper()}_PROTOCOL"
    protocol = env.get(protocol_var) or env.get(_GENERIC_PROTOCOL) or "grpc"  # the Python SDK's default
    env[protocol_var] = protocol
    if env.get(endpoint_var):
        return
    generic = env.get(_GENERIC_ENDPOINT)
    if protocol == "grpc":
        env[endpoint_var] = generic or "http://localhost:4317"
    else:
        env[endpoint_var] = (generic or "http://localhost:4318").rstrip("/") + f"/v1/{signal}"


def child_environment(base: Mapping[str, str], context: Context, receiver_url: str | None) -> dict[str, str]:
    """A copy of ``base`` for the child: carriers for ``context`` and, with a receiver, the OTLP
    variables pointing traces at it (``receiver_url`` is the base URL, ``/v1/traces`` is appended)."""
    env = dict(base)
    inject_environment(env, context)
    if receiver_url is not None:
        for signal in ("metrics", "logs"):
            _pin(env, signal)
        env["OTEL_TRACES_EXPORTER"] = "otlp"  # an inherited "console" would print the child's spans
        env["CHRONOGRAPH_EXEC_JOIN"] = "1"  # under the chronograph configurator: join without code (_child)
        env[_GENERIC_ENDPOINT] = receiver_url
        env[_GENERIC_PROTOCOL] = _HTTP
        env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] = receiver_url + "/v1/traces"
        env["OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"] = _HTTP
    return env
