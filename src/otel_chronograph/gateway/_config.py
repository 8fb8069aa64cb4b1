"""The gateway's configuration file, in the Collector's shape (SPEC.md Part 2, "Gateway").

A Collector user reads it at once: ``receivers``, ``processors`` (``chronograph`` holds the document of
Part 1), ``exporters``, ``service.pipelines`` and ``service.telemetry``; component ids are ``type`` or
``type/name``; ``${env:VAR}`` and ``${env:VAR:-default}`` are expanded as the Collector's env provider
does. Validation works like the Collector's ``validate``: every error names the dotted key, an unknown
component type lists the valid ones, and a pipeline naming a component that is not configured is an
error. Component types and keys follow the Collector version pinned in ``peers/`` (``otlp_grpc`` and
``otlp_http``, with the deprecated ``otlp`` and ``otlphttp`` accepted as aliases, as it does).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from .._config import ChronographConfig, ConfigError, Seconds, _apply_env, _read_yaml, error_lines, short
from .._text import safe

__all__ = [
    "EXPORTER_TYPES",
    "ExporterConfig",
    "FileExporterConfig",
    "GatewayConfig",
    "OtlpGrpcExporterConfig",
    "OtlpHttpExporterConfig",
    "load_gateway_config",
]

_log = logging.getLogger("otel_chronograph.gateway")

DEFAULT_GRPC_ENDPOINT = "127.0.0.1:5317"
DEFAULT_HTTP_ENDPOINT = "127.0.0.1:5318"
_MAX_ERRORS = 20


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


PositiveSeconds = Annotated[Seconds, Field(gt=0)]


def _endpoint(value: Any) -> str:
    """``host:port`` (a scheme is not part of a listening address)."""
    text = str(value).strip()
    _, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"must be host:port, got {short(value)}")
    return text


ListenEndpoint = Annotated[str, BeforeValidator(_endpoint)]

# -- receivers ------------------------------------------------------------------------------------


class GrpcProtocol(_Model):
    endpoint: ListenEndpoint = DEFAULT_GRPC_ENDPOINT
    max_recv_msg_size_mib: int = Field(4, ge=1, le=1024)
    max_concurrent_streams: int = Field(64, ge=1)


class HttpProtocol(_Model):
    endpoint: ListenEndpoint = DEFAULT_HTTP_ENDPOINT
    max_request_body_size: int = Field(20 * 1024 * 1024, ge=1)  # the Collector's default, 20 MiB
    traces_url_path: str = Field("/v1/traces", pattern=r"^/")


def _none_to_empty(value: Any) -> Any:
    """``grpc:`` with nothing after it means "on, with the defaults", as in the Collector."""
    return {} if value is None else value


class Protocols(_Model):
    grpc: Annotated[GrpcProtocol | None, BeforeValidator(_none_to_empty)] = None
    http: Annotated[HttpProtocol | None, BeforeValidator(_none_to_empty)] = None


class OtlpReceiverConfig(_Model):
    protocols: Protocols


# -- exporters ------------------------------------------------------------------------------------


class ClientTLS(_Model):
    insecure: bool = False
    insecure_skip_verify: bool = False
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    server_name_override: str | None = None


class SendingQueue(_Model):
    """A bounded queue of export requests in front of each exporter (the Collector's defaults in
    requests); when it is full the receivers refuse new data instead of dropping it."""

    enabled: bool = True
    num_consumers: int = Field(2, ge=1, le=64)
    queue_size: int = Field(1000, ge=1)


class RetryOnFailure(_Model):
    """Exponential backoff, the Collector's keys and defaults."""

    enabled: bool = True
    initial_interval: PositiveSeconds = 5.0
    max_interval: PositiveSeconds = 30.0
    max_elapsed_time: Seconds = 300.0  # 0: retry forever
    multiplier: float = Field(1.5, ge=1.0, allow_inf_nan=False)
    randomization_factor: float = Field(0.5, ge=0.0, le=1.0)


class _Sending(_Model):
    timeout: PositiveSeconds = 5.0
    sending_queue: SendingQueue = Field(default_factory=SendingQueue)
    retry_on_failure: RetryOnFailure = Field(default_factory=RetryOnFailure)


class OtlpGrpcExporterConfig(_Sending):
    endpoint: str = Field(min_length=1)
    tls: ClientTLS = Field(default_factory=ClientTLS)
    headers: dict[str, str] = Field(default_factory=dict)
    compression: Literal["gzip", "none", ""] = "gzip"


class OtlpHttpExporterConfig(_Sending):
    endpoint: str | None = Field(None, pattern=r"^https?://")
    traces_endpoint: str | None = Field(None, pattern=r"^https?://")
    metrics_endpoint: str | None = Field(None, pattern=r"^https?://")
    tls: ClientTLS = Field(default_factory=ClientTLS)
    headers: dict[str, str] = Field(default_factory=dict)
    compression: Literal["gzip", "none", ""] = "gzip"
    encoding: Literal["proto", "json"] = "proto"
    timeout: PositiveSeconds = 30.0


class DebugExporterConfig(_Model):
    verbosity: Literal["basic", "normal", "detailed"] = "basic"


class FileExporterConfig(_Model):
    path: str = Field(min_length=1)
    format: Literal["json", "proto"] = "json"
    append: bool = False


class NopExporterConfig(_Model):
    pass


ExporterConfig = (OtlpGrpcExporterConfig | OtlpHttpExporterConfig | DebugExporterConfig | FileExporterConfig
                  | NopExporterConfig)

EXPORTER_TYPES: dict[str, type[_Model]] = {
    "debug": DebugExporterConfig,
    "file": FileExporterConfig,
    "nop": NopExporterConfig,
    "otlp_grpc": OtlpGrpcExporterConfig,
    "otlp_http": OtlpHttpExporterConfig,
}
_ALIASES = {"otlp": "otlp_grpc", "otlphttp": "otlp_http"}  # deprecated names the Collector still accepts
_METRICS_EXPORTERS = ("debug", "nop", "otlp_grpc", "otlp_http")

# -- service --------------------------------------------------------------------------------------


class TracesPipeline(_Model):
    receivers: tuple[str, ...] = Field(min_length=1)
    processors: tuple[str, ...] = ()
    exporters: tuple[str, ...] = Field(min_length=1)


class MetricsPipeline(_Model):
    receivers: tuple[str, ...] = Field((), max_length=0, description="the gateway receives no metrics")
    processors: tuple[str, ...] = Field((), max_length=0)
    exporters: tuple[str, ...] = Field(min_length=1)


class Pipelines(_Model):
    traces: TracesPipeline
    metrics: MetricsPipeline | None = None


class TelemetryMetrics(_Model):
    """The gateway's own health: Prometheus text format on ``endpoint`` (``/metrics``)."""

    level: Literal["none", "basic", "normal", "detailed"] = "normal"
    endpoint: ListenEndpoint | None = None


class TelemetryLogs(_Model):
    level: Literal["debug", "info", "warn", "error"] = "info"


class Telemetry(_Model):
    metrics: TelemetryMetrics = Field(default_factory=TelemetryMetrics)
    logs: TelemetryLogs = Field(default_factory=TelemetryLogs)


class Service(_Model):
    pipelines: Pipelines
    telemetry: Telemetry = Field(default_factory=Telemetry)


class _Document(_Model):
    """The file's top level; components are validated per type afterwards (their keys depend on it)."""

    receivers: dict[str, Annotated[dict[str, Any], BeforeValidator(_none_to_empty)]] = Field(min_length=1)
    processors: dict[str, Annotated[dict[str, Any], BeforeValidator(_none_to_empty)]] = Field(
        default_factory=dict)
    exporters: dict[str, Annotated[dict[str, Any], BeforeValidator(_none_to_empty)]] = Field(min_length=1)
    service: Service


# -- the validated configuration --------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway runs with, resolved: ids -> validated component configs."""

    origin: str
    receivers: dict[str, OtlpReceiverConfig]
    chronograph: ChronographConfig
    exporters: dict[str, tuple[str, ExporterConfig]]  # id -> (type, config), traces pipeline order
    metrics_exporters: dict[str, tuple[str, ExporterConfig]]
    telemetry: Telemetry

    def grpc_endpoints(self) -> list[GrpcProtocol]:
        return [r.protocols.grpc for r in self.receivers.values() if r.protocols.grpc is not None]

    def http_endpoints(self) -> list[HttpProtocol]:
        return [r.protocols.http for r in self.receivers.values() if r.protocols.http is not None]


class _Errors:
    def __init__(self, origin: str) -> None:
        self.origin = origin
        self.lines: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.lines.append(safe(f"{self.origin}: {key}: {message}"))

    def validation(self, err: ValidationError, root: tuple[str, ...]) -> None:
        self.lines.extend(error_lines(err, self.origin, root))

    def raise_if_any(self) -> None:
        if self.lines:
            lines = self.lines
            if len(lines) > _MAX_ERRORS:
                lines = [*lines[:_MAX_ERRORS], f"... and {len(lines) - _MAX_ERRORS} more"]
            raise ConfigError("invalid gateway configuration:\n  " + "\n  ".join(lines))


def _type_of(component_id: str, aliases: Mapping[str, str] | None = None) -> tuple[str, str]:
    """(type, type as written) of ``type`` or ``type/name``."""
    written = component_id.split("/", 1)[0]
    return (aliases or {}).get(written, written), written


def _validate(model: type[BaseModel], raw: Any, root: tuple[str, ...], errors: _Errors) -> Any:
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        errors.validation(exc, root)
        return None


def _unknown(errors: _Errors, kind: str, component_id: str, valid: Any) -> None:
    written = _type_of(component_id)[1]
    errors.add(f"{kind}.{component_id}", f'unknown type "{written}" for id "{component_id}" '
                                         f"(valid values: {', '.join(sorted(valid))})")


def _referenced(errors: _Errors, key: str, kind: str, ids: tuple[str, ...], configured: Mapping[str, Any]
                ) -> None:
    for cid in ids:
        if cid not in configured:
            errors.add(key, f'references {kind} "{cid}" which is not configured')
    seen: set[str] = set()
    for cid in ids:
        if cid in seen:
            errors.add(key, f'references {kind} "{cid}" multiple times')
        seen.add(cid)


def _chronograph(raw: Any, environ: Mapping[str, str], errors: _Errors) -> ChronographConfig | None:
    """The chronograph document of Part 1; the gateway's default lap scope is ``trace``."""
    doc = dict(raw or {})
    laps = doc.get("laps")
    if laps is None or isinstance(laps, Mapping):
        doc["laps"] = {"scope": "trace", **(laps or {})}
    try:
        doc = _apply_env(doc, environ)
    except ConfigError as exc:
        errors.lines.append(str(exc))
        return None
    made: ChronographConfig | None = _validate(ChronographConfig, doc, ("processors", "chronograph"), errors)
    return made


def validate_document(doc: Any, origin: str, environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """The configuration from a loaded (and env-expanded) document; :class:`ConfigError` lists every
    problem found, one line each."""
    env = os.environ if environ is None else environ
    errors = _Errors(origin)
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{origin}: expected a mapping at the top level, got {type(doc).__name__}")
    top = _validate(_Document, doc, (), errors)
    errors.raise_if_any()
    assert isinstance(top, _Document)

    receivers: dict[str, OtlpReceiverConfig] = {}
    for rid, raw in top.receivers.items():
        if _type_of(rid)[0] != "otlp":
            _unknown(errors, "receivers", rid, ["otlp"])
            continue
        rc = _validate(OtlpReceiverConfig, {"protocols": {}, **raw}, ("receivers", rid), errors)
        if rc is not None:
            if rc.protocols.grpc is None and rc.protocols.http is None:
                errors.add(f"receivers.{rid}.protocols", "must define at least one of grpc, http")
            receivers[rid] = rc

    chrono: ChronographConfig | None = None
    for pid, raw in top.processors.items():
        if _type_of(pid)[0] != "chronograph":
            _unknown(errors, "processors", pid, ["chronograph"])
            continue
        chrono = _chronograph(raw, env, errors)

    exporters: dict[str, tuple[str, ExporterConfig]] = {}
    for eid, raw in top.exporters.items():
        etype, written = _type_of(eid, _ALIASES)
        model = EXPORTER_TYPES.get(etype)
        if model is None:
            _unknown(errors, "exporters", eid, EXPORTER_TYPES)
            continue
        if written != etype:
            _log.warning('exporter "%s": the "%s" alias is deprecated; use "%s" instead', eid, written, etype)
        made = _validate(model, raw, ("exporters", eid), errors)
        if made is not None:
            if isinstance(made, OtlpHttpExporterConfig) and made.endpoint is None and \
                    made.traces_endpoint is None:
                errors.add(f"exporters.{eid}.endpoint", "must be set (or traces_endpoint)")
            exporters[eid] = (etype, made)

    pipelines = top.service.pipelines
    traces = pipelines.traces
    _referenced(errors, "service.pipelines.traces.receivers", "receiver", traces.receivers, top.receivers)
    _referenced(errors, "service.pipelines.traces.processors", "processor", traces.processors,
                top.processors)
    _referenced(errors, "service.pipelines.traces.exporters", "exporter", traces.exporters, top.exporters)
    chrono_ids = [p for p in traces.processors if _type_of(p)[0] == "chronograph"]
    if len(chrono_ids) != 1:
        errors.add("service.pipelines.traces.processors",
                   "must name the chronograph processor exactly once (it derives the laps)")
    metrics_exporters: dict[str, tuple[str, ExporterConfig]] = {}
    if pipelines.metrics is not None:
        key = "service.pipelines.metrics.exporters"
        _referenced(errors, key, "exporter", pipelines.metrics.exporters, top.exporters)
        for eid in pipelines.metrics.exporters:
            if eid in exporters:
                etype, cfg = exporters[eid]
                if etype not in _METRICS_EXPORTERS:
                    errors.add(key, f'exporter "{eid}" ({etype}) does not export metrics '
                                    f"(valid types: {', '.join(_METRICS_EXPORTERS)})")
                metrics_exporters[eid] = (etype, cfg)
    errors.raise_if_any()
    if chrono_ids:
        chrono = _chronograph(top.processors[chrono_ids[0]], env, errors)
        errors.raise_if_any()
    assert chrono is not None
    return GatewayConfig(
        origin=origin,
        receivers={rid: receivers[rid] for rid in traces.receivers},
        chronograph=chrono,
        exporters={eid: exporters[eid] for eid in traces.exporters},
        metrics_exporters=metrics_exporters,
        telemetry=top.service.telemetry,
    )


# -- ${env:VAR} expansion -------------------------------------------------------------------------------

_ENV_REF = re.compile(r"\$\$|\$\{(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env(node: Any, environ: Mapping[str, str]) -> Any:
    """``${env:VAR}``, ``${VAR}`` and ``${env:VAR:-default}`` in string values, ``$$`` for a literal
    ``$``. A value that is one reference alone takes the type YAML gives it (``${env:PORT}`` -> int)."""
    if isinstance(node, Mapping):
        return {k: expand_env(v, environ) for k, v in node.items()}
    if isinstance(node, list):
        return [expand_env(v, environ) for v in node]
    if not isinstance(node, str) or "$" not in node:
        return node

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        value = environ.get(m.group(1))
        if value is None or (value == "" and m.group(2) is not None):
            if m.group(2) is not None:
                return m.group(2)
            _log.warning("configuration references unset environment variable %s", m.group(1))
            return ""
        return value

    whole = _ENV_REF.fullmatch(node)
    text = _ENV_REF.sub(sub, node)
    if whole is not None and whole.group(0) != "$$":
        import yaml

        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError:
            return text
        return value if isinstance(value, (int, float, bool, str)) else text
    return text


def load_gateway_config(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None
                        ) -> GatewayConfig:
    """Read, expand and validate a gateway file. Raises :class:`ConfigError` (one line per problem)."""
    env = os.environ if environ is None else environ
    doc = _read_yaml(Path(path))
    if doc is None:
        raise ConfigError(f"{path}: empty configuration (receivers, processors, exporters and service "
                          "are required)")
    return validate_document(expand_env(doc, env), str(path), env)
