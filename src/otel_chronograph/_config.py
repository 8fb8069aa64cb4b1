"""Configuration: the YAML document of SPEC.md, validated before anything starts.

Validation is done by pydantic models with ``extra="forbid"`` so a typo is an error, not a silently
ignored key; every error names the dotted key and the file it came from.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from ._text import safe
from ._vocab import Status

__all__ = [
    "BillingConfig",
    "ChronographConfig",
    "ConfigError",
    "DisplayConfig",
    "ExecArg",
    "ExecCommand",
    "ExecConfig",
    "ExecEndpoint",
    "ExecTier",
    "IdentityConfig",
    "IdentitySource",
    "LapsConfig",
    "MatchSpec",
    "MeterConfig",
    "RecorderConfig",
    "SectorRule",
    "StatusConfig",
    "load_config",
]

SpanKindName = Literal["SERVER", "CLIENT", "INTERNAL", "PRODUCER", "CONSUMER"]


class ConfigError(ValueError):
    """Raised for any invalid configuration; the message names the file and the key."""


def _to_decimal(value: Any) -> Decimal:
    """Money is exact: accept strings and numbers, never bools, never NaN or negatives."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"must be a non-negative decimal number, got {short(value)}")
    if isinstance(value, float):
        value = repr(value)  # 0.001 -> "0.001", not the binary expansion
    try:
        result = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        raise ValueError(f"must be a non-negative decimal number, got {short(value)}") from None
    if not result.is_finite() or result < 0:
        raise ValueError(f"must be a non-negative decimal number, got {short(value)}")
    return result


Money = Annotated[Decimal, BeforeValidator(_to_decimal)]
NonNegFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


class MatchSpec(_Model):
    """Selects spans: every given field must hold (glob on the name, kind, span or resource attribute
    presence, and ``value`` for whichever of ``attribute``/``resource`` is given)."""

    name: str | None = None
    kind: SpanKindName | None = None
    attribute: str | None = None
    resource: str | None = None
    value: str | int | float | bool | None = None

    @model_validator(mode="after")
    def _value_needs_attribute(self) -> MatchSpec:
        if self.value is not None and (self.attribute is None) == (self.resource is None):
            raise ValueError("'value' needs exactly one of 'attribute' or 'resource'")
        if self.name is None and self.kind is None and self.attribute is None and self.resource is None:
            raise ValueError("a match needs at least one of name, kind, attribute, resource")
        return self


class LapRule(MatchSpec):
    """A span matching this (at start, like a sampler) is a lap; ``command`` names it."""

    command: str | None = None


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _to_seconds(value: Any) -> float:
    """Durations as the Collector writes them (``2s``, ``500ms``, ``1m``); a bare number is seconds."""
    if isinstance(value, bool):
        raise ValueError(f"must be a duration like 2s or 500ms, got {short(value)}")
    if isinstance(value, (int, float)):
        seconds = float(value) if abs(value) < 1e300 else float("inf")  # a huge int: no OverflowError
    else:
        found = _DURATION.match(str(value))
        if found is None:
            raise ValueError(f"must be a duration like 2s or 500ms, got {short(value)}")
        seconds = float(found.group(1)) * _DURATION_UNITS[found.group(2)]
    if not 0 <= seconds < float("inf"):  # NaN fails too
        raise ValueError(f"must be a finite, non-negative duration, got {short(value)}")
    return seconds


Seconds = Annotated[float, BeforeValidator(_to_seconds)]


class IdentitySource(_Model):
    """Where one identity field comes from: a span attribute, a resource attribute or W3C baggage."""

    attribute: str | None = None
    resource: str | None = None
    baggage: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> IdentitySource:
        if sum(x is not None for x in (self.attribute, self.resource, self.baggage)) != 1:
            raise ValueError("give exactly one of attribute, resource, baggage")
        return self


class IdentityConfig(_Model):
    """Rules for the lap identity fields that code did not set (first source with a value wins)."""

    customer: tuple[IdentitySource, ...] = ()
    tier: tuple[IdentitySource, ...] = ()
    command: tuple[IdentitySource, ...] = ()
    score: tuple[IdentitySource, ...] = ()
    session: tuple[IdentitySource, ...] = ()


class LapsConfig(_Model):
    match: tuple[LapRule, ...] = ()
    auto_server_roots: bool = True
    scope: Literal["service", "trace"] = "service"
    grace_ms: NonNegFloat = 0.0
    decision_wait: Seconds = 2.0
    max_pending_traces: int = Field(10_000, ge=1)
    max_spans_per_trace: int = Field(2_000, ge=1)
    identity: IdentityConfig = Field(default_factory=IdentityConfig)


class SectorRule(_Model):
    """Names the sector of matching spans: ``name``, or the value of the attribute ``name_from``
    (span attribute first, then resource attribute). Without ``match`` every span matches."""

    name: str | None = Field(None, min_length=1)
    name_from: str | None = Field(None, min_length=1)
    match: MatchSpec | None = None

    @model_validator(mode="after")
    def _one_name(self) -> SectorRule:
        if (self.name is None) == (self.name_from is None):
            raise ValueError("give exactly one of name, name_from")
        if self.match is None and self.name is not None:
            raise ValueError("a rule with a fixed name needs 'match'")
        return self


class SectorsConfig(_Model):
    rules: tuple[SectorRule, ...] = ()


class Thresholds(_Model):
    green_ms: NonNegFloat | None = None
    yellow_ms: NonNegFloat | None = None


class StatusConfig(_Model):
    green_ms: NonNegFloat = 100.0
    yellow_ms: NonNegFloat = 300.0
    on_error: Literal[Status, "time"] = "RED"  # flattens to one Literal: errors name the plain key
    commands: dict[str, Thresholds] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _ordered(self) -> StatusConfig:
        if self.green_ms > self.yellow_ms:
            raise ValueError(f"green_ms ({self.green_ms}) must not exceed yellow_ms ({self.yellow_ms})")
        for cmd in self.commands:
            g, y = self.thresholds(cmd)
            if g > y:
                raise ValueError(f"commands.{cmd}: green_ms ({g}) must not exceed yellow_ms ({y})")
        return self

    def thresholds(self, command: str) -> tuple[float, float]:
        t = self.commands.get(command)
        if t is None:
            return self.green_ms, self.yellow_ms
        return (
            self.green_ms if t.green_ms is None else t.green_ms,
            self.yellow_ms if t.yellow_ms is None else t.yellow_ms,
        )


class DisplayConfig(_Model):
    split_times: bool = False
    format: Literal["text", "json", "off"] = "text"
    stream: Literal["stderr", "stdout"] = "stderr"


class MeterConfig(_Model):
    """Where usage goes (issue 3). The Stripe key is never here: only ``STRIPE_API_KEY``."""

    api: Literal["v1", "v2"] = "v1"
    event_name: str = Field("chronograph_usage", min_length=1)
    value: Literal["cost_micros", "requests", "lap_ms"] = "cost_micros"
    customer_payload_key: str = "stripe_customer_id"
    value_payload_key: str = "value"
    batch_size: int = Field(100, ge=1, le=100)
    flush_interval_s: NonNegFloat = 60.0
    outbox: str = "chronograph-outbox.db"
    api_base: str | None = None
    meter_events_base: str | None = None
    max_attempts: int = Field(200, ge=1)  # with retry_max_s 300: about 12 hours of outage before dead-letter
    retention_days: NonNegFloat = 90.0
    shutdown_timeout_s: NonNegFloat = 10.0
    # Durability of the outbox commit on the lap's path: "normal" (WAL, survives a process crash) or
    # "full" (fsync per commit, also survives power loss).
    synchronous: Literal["normal", "full"] = "normal"
    lease_s: float = Field(30.0, gt=0, allow_inf_nan=False)
    request_timeout_s: float = Field(10.0, gt=0, allow_inf_nan=False)
    retry_base_s: float = Field(0.5, gt=0, allow_inf_nan=False)
    retry_max_s: float = Field(300.0, gt=0, allow_inf_nan=False)
    concurrency: int = Field(4, ge=1, le=64)
    # "in_process": a background thread of the application delivers. "external": the application only
    # commits outbox rows (no Stripe key, no Stripe CPU in the app); `chronograph billing deliver` runs
    # beside it and delivers from the same outbox file.
    delivery: Literal["in_process", "external"] = "in_process"


class ScoreBand(_Model):
    """Enterprise score pricing: each point in [low, high] above the baseline costs ``per_point``."""

    low: int = Field(ge=0, le=100)
    high: int = Field(ge=0, le=100)
    per_point: Money

    @model_validator(mode="after")
    def _ordered(self) -> ScoreBand:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


def _default_bands() -> tuple[ScoreBand, ...]:
    return (
        ScoreBand(low=0, high=85, per_point=Decimal("0")),
        ScoreBand(low=86, high=90, per_point=Decimal("1000")),
        ScoreBand(low=91, high=95, per_point=Decimal("2000")),
        ScoreBand(low=96, high=99, per_point=Decimal("5000")),
        ScoreBand(low=100, high=100, per_point=Decimal("100000")),
    )


class BillingConfig(_Model):
    enabled: bool = False
    tiers: dict[str, Money] = Field(
        default_factory=lambda: {"free": Decimal(0), "pro": Decimal(1), "enterprise": Decimal(2)}
    )
    rates: dict[str, Money] = Field(default_factory=dict)
    default_rate: Money = Decimal(0)
    default_tier: str = "free"
    unknown_tier_multiplier: Money = Decimal(1)
    meter: MeterConfig = Field(default_factory=lambda: MeterConfig())
    enterprise_bands: tuple[ScoreBand, ...] = Field(default_factory=_default_bands)


class RecorderConfig(_Model):
    enabled: bool = True
    max_records: int = Field(1000, ge=1)
    persistent: bool = False
    path: str = "chronograph.db"
    retention_hours: NonNegFloat = 24.0
    anomaly_factor: float = Field(10.0, gt=0, allow_inf_nan=False)
    max_events_per_lap: int = Field(200, ge=0)


# -- exec (CLI as a service, SPEC.md Part 2 "Exec") ---------------------------------------------------

PositiveSeconds = Annotated[float, BeforeValidator(_to_seconds), Field(gt=0)]


class ExecArg(_Model):
    """The rule one argument of a named command must pass (``otel_chronograph.exec._template``)."""

    max_length: int = Field(4096, ge=1, le=1_048_576)
    pattern: str | None = None  # re.fullmatch
    path: bool = False  # a relative path: no leading '/', no '..' component
    leading_dash: bool = False  # a value starting with '-' is read as an option by most programs

    @model_validator(mode="after")
    def _compiles(self) -> ExecArg:
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern {short(self.pattern)} is not a regular expression: {exc}"
                                 ) from None
        return self


class ExecCommand(_Model):
    """A named command: a fixed program and argv template; ``{name}`` placeholders filled by checked args."""

    argv: tuple[str, ...] = Field(min_length=1)
    args: dict[str, ExecArg] = Field(default_factory=dict)
    tiers: tuple[str, ...] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None

    @model_validator(mode="after")
    def _placeholders(self) -> ExecCommand:
        from .exec._template import placeholder_names

        if placeholder_names(self.argv[:1]):
            raise ValueError("argv[0] (the program) cannot be a placeholder")
        used = placeholder_names(self.argv)
        for name in used:
            if name not in self.args:
                raise ValueError(f"placeholder {{{name}}} has no rule under args (write {{{{ }}}} for a "
                                 "literal brace)")
        for name in self.args:
            if name not in used:
                raise ValueError(f"args.{name}: no {{{name}}} placeholder in argv")
        return self


class ExecTier(_Model):
    """Per-tier limits of ``chronograph exec-server`` (concurrency and rate are per API key)."""

    timeout_s: PositiveSeconds = 10.0
    output_cap_bytes: int = Field(65_536, ge=64)
    concurrency: int = Field(2, ge=1)
    rate_per_minute: float = Field(60.0, gt=0, allow_inf_nan=False)


class ExecEndpoint(_Model):
    """A remote ``chronograph exec-server``; its API key comes from the environment variable ``key_env``."""

    url: str = Field(pattern=r"^https?://[^\s/]+(/\S*)?$")
    tiers: tuple[str, ...] = ()  # tiers that may use it; empty: every tier
    key_env: str = Field("CHRONOGRAPH_EXEC_KEY", min_length=1)


def _default_exec_tiers() -> dict[str, ExecTier]:
    return {
        "free": ExecTier(timeout_s=10, output_cap_bytes=65_536, concurrency=2, rate_per_minute=60),
        "pro": ExecTier(timeout_s=300, output_cap_bytes=1_048_576, concurrency=8, rate_per_minute=600),
        "enterprise": ExecTier(timeout_s=900, output_cap_bytes=8_388_608, concurrency=32,
                               rate_per_minute=6000),
    }


class ExecConfig(_Model):
    """``chronograph exec`` and ``exec-server``: named commands, tier limits and routing."""

    mode: Literal["local", "hybrid", "cloud", "smart"] = "local"
    commands: dict[str, ExecCommand] = Field(default_factory=dict)
    tiers: dict[str, ExecTier] = Field(default_factory=_default_exec_tiers)
    endpoints: dict[str, ExecEndpoint] = Field(default_factory=dict)
    # tier -> "local" or an endpoint name (hybrid); smart: a tier routed "local" stays local, the others
    # go to the fastest healthy endpoint open to their tier. cloud mode uses the endpoint "cloud".
    routes: dict[str, str] = Field(default_factory=lambda: {"free": "local", "pro": "cloud",
                                                            "enterprise": "dedicated"})
    pass_env: tuple[str, ...] = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ", "HOME", "TMPDIR")
    max_running: int = Field(64, ge=1)  # runs at once on one exec-server, every key together
    max_request_bytes: int = Field(1_048_576, ge=1024)
    kill_grace_s: Seconds = 1.0  # SIGTERM to the process group, then SIGKILL after this
    probe_timeout_s: PositiveSeconds = 1.0
    latency_ttl_s: Seconds = 30.0  # smart routing: measured latencies reused this long (0: always measure)
    remote_timeout_s: PositiveSeconds = 900.0

    @model_validator(mode="after")
    def _references(self) -> ExecConfig:
        for name, command in self.commands.items():
            for tier in command.tiers:
                if tier not in self.tiers:
                    raise ValueError(f"commands.{name}.tiers: {short(tier)} is not a tier under exec.tiers")
        if self.mode == "cloud" and "cloud" not in self.endpoints:
            raise ValueError("mode cloud needs an endpoint named 'cloud' under exec.endpoints")
        if self.mode == "hybrid":
            for tier, target in self.routes.items():
                if target != "local" and target not in self.endpoints:
                    raise ValueError(f"routes.{tier}: no endpoint named {short(target)} under exec.endpoints "
                                     "(or route it to local)")
        return self


class ChronographConfig(_Model):
    enabled: bool = True
    laps: LapsConfig = Field(default_factory=lambda: LapsConfig())
    sectors: SectorsConfig = Field(default_factory=SectorsConfig)
    status: StatusConfig = Field(default_factory=StatusConfig)
    display: DisplayConfig = Field(default_factory=DisplayConfig)
    billing: BillingConfig = Field(default_factory=BillingConfig)
    recorder: RecorderConfig = Field(default_factory=lambda: RecorderConfig())
    exec: ExecConfig = Field(default_factory=lambda: ExecConfig())


_BOOL_ENV = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False,
             "off": False}
_ENV_OVERRIDES: dict[str, tuple[str, ...]] = {
    "CHRONOGRAPH_ENABLED": ("enabled",),
    "CHRONOGRAPH_SPLIT_TIMES": ("display", "split_times"),
    "CHRONOGRAPH_BILLING_ENABLED": ("billing", "enabled"),
    "CHRONOGRAPH_TIER": ("billing", "default_tier"),
}


_UNION_TAGS = {"str", "int", "float", "bool", "none"}


def error_lines(err: ValidationError, origin: str, root: tuple[str, ...] = ("chronograph",)) -> list[str]:
    """One line per bad key (``origin: dotted.key: reasons``); a union's per-member failures fold into
    one line with every reason. ``root`` is where the validated document sits in its file."""
    by_key: dict[str, list[str]] = {}
    for e in err.errors():
        parts = [str(p) for p in e["loc"]]
        # pydantic adds union member tags ("str", "literal['a']", "function-after[...]") to the location
        while parts and (parts[-1] in _UNION_TAGS or "[" in parts[-1]):
            parts.pop()
        key = ".".join([*root, *parts])
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        reasons = by_key.setdefault(key, [])
        if msg not in reasons:
            reasons.append(msg)
    # Keys and messages may carry the file's own text: escaped, so `config check` cannot drive a terminal.
    return [safe(f"{origin}: {_cut(key, 120)}: {_cut(' or '.join(msgs), 240)}")
            for key, msgs in by_key.items()]


def _format_error(err: ValidationError, origin: str) -> str:
    lines = error_lines(err, origin)
    if len(lines) > 20:
        lines = [*lines[:20], f"... and {len(lines) - 20} more"]
    return "invalid chronograph configuration:\n  " + "\n  ".join(lines)


def _unwrap(doc: Any, origin: str) -> dict[str, Any]:
    if doc is None:
        return {}
    if not isinstance(doc, Mapping):
        raise ConfigError(f"{origin}: expected a mapping at the top level, got {type(doc).__name__}")
    if set(doc) == {"chronograph"}:
        doc = doc["chronograph"] or {}
        if not isinstance(doc, Mapping):
            raise ConfigError(f"{origin}: chronograph: expected a mapping, got {type(doc).__name__}")
    return dict(doc)


MAX_CONFIG_BYTES = 1024 * 1024  # a configuration is a few KiB; anything near this is a mistake or an attack
MAX_YAML_NODES = 100_000  # nodes after alias expansion: a 500-byte alias bomb expands to billions
MAX_YAML_DEPTH = 100  # the schema is 6 levels deep; libyaml's composer recurses in C
_MAX_ECHO = 80


def _cut(text: str, n: int) -> str:
    return text if len(text) <= n else text[:n] + "…"


def short(value: object) -> str:
    """A value as echoed in an error message: repr, cut to a readable length."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's 4,300-digit conversion limit
        return f"<a {type(value).__name__} too long to show>"
    return text if len(text) <= _MAX_ECHO else text[:_MAX_ECHO] + f"… ({len(text)} characters)"


def _read_text(path: Path) -> str:
    """At most the size limit is read: a device (/dev/zero) or a growing file cannot exhaust memory."""
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read configuration: {exc.strerror or exc}") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: configuration file larger than {MAX_CONFIG_BYTES // 1024} KiB: not read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}): save the file as UTF-8") from None


def _read_yaml(path: Path) -> Any:
    """The YAML document at ``path``, bounded (size, depth, expanded aliases), errors as ConfigError.
    PyYAML is imported only when a file is read: ``install()`` with a dict never pays for it."""
    from ._yaml import read_yaml

    return read_yaml(path)


def _raw_from_environment(environ: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    path = environ.get("CHRONOGRAPH_CONFIG")
    if path:
        return _unwrap(_read_yaml(Path(path)), path), path
    otel = environ.get("OTEL_CONFIG_FILE")
    if otel:
        doc = _read_yaml(Path(otel))
        if isinstance(doc, Mapping):
            dist = doc.get("distribution")
            if isinstance(dist, Mapping) and "chronograph" in dist:
                return _unwrap(dist["chronograph"], f"{otel} (distribution.chronograph)"), otel
    return {}, "<defaults>"


def _apply_env(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    for var, path in _ENV_OVERRIDES.items():
        text = environ.get(var)
        if text is None or text == "":
            continue
        value: Any = text
        if var != "CHRONOGRAPH_TIER":
            if text.strip().lower() not in _BOOL_ENV:
                key = ".".join(("chronograph", *path))
                raise ConfigError(f"environment: {var} ({key}): expected true/false, got {short(text)}")
            value = _BOOL_ENV[text.strip().lower()]
        node = raw
        for part in path[:-1]:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, Mapping) else {}
            node = child
        node[path[-1]] = value
    return raw


def load_config(
    source: str | os.PathLike[str] | Mapping[str, Any] | ChronographConfig | None = None,
    environ: Mapping[str, str] | None = None,
) -> ChronographConfig:
    """Build the configuration from a path, a dict, or (None) the environment, then apply env overrides.

    Raises :class:`ConfigError` naming the file and key for anything invalid.
    """
    env = os.environ if environ is None else environ
    if isinstance(source, ChronographConfig):
        raw: dict[str, Any] = source.model_dump()
        origin = "<code>"
    elif isinstance(source, Mapping):
        raw, origin = _unwrap(source, "<dict>"), "<dict>"
    elif source is not None:
        raw, origin = _unwrap(_read_yaml(Path(source)), str(source)), str(source)
    else:
        raw, origin = _raw_from_environment(env)
    raw = _apply_env(raw, env)
    try:
        return ChronographConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, origin)) from None
