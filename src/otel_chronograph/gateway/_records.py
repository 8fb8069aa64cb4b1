"""The gateway's lean OTLP protobuf -> record path: read only what assembly, lap scope, rules and
derivation look at, and keep each span as its serialized bytes for forwarding.

Why: with protobuf's upb backend a request parses at about 1 µs per span, but turning every attribute
into Python objects costs several µs more per span, and the gateway's throughput is bounded by one core.
A span's attributes are read only when its serialized bytes contain one of the keys the configuration
can look at (``chronograph.*``, ``http.route`` and the HTTP method for the command, ``session.id``, and
every key named by lap, sector and identity rules); then only those keys are decoded. A KeyValue's key
is always written as tag ``0x0a``, its length and the key, so one regular-expression search over the
bytes finds every candidate (a hit inside an event or a value only costs the decode). The record is the
one :func:`otel_chronograph.sources.records_from_proto` gives, minus attributes no rule reads, so it
derives the same lap (tests/gateway/test_records.py checks that with hypothesis).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from opentelemetry.trace import SpanKind

from .._config import ChronographConfig, MatchSpec
from ..engine._records import EMPTY, EventRecord, SpanRecord
from ..sources._otlp import _KINDS, _id, value_from_proto

__all__ = ["GatewayRecord", "LeanDecoder", "attribute_keys", "ld"]

_STATUS_ERROR = 2
INTERNAL = SpanKind.INTERNAL
# What derivation reads from span attributes whatever the configuration (engine/_derive.py, _scope.py).
_ALWAYS = ("chronograph.lap", "chronograph.command", "chronograph.tier", "chronograph.customer",
           "chronograph.score", "chronograph.sector", "http.route", "http.request.method", "http.method",
           "session.id")


def varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SHORT = [varint(n) for n in range(16384)]  # lengths of nearly every field: a table, not a loop


def ld(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited protobuf field: tag, length, payload."""
    n = len(payload)
    return tag + (_SHORT[n] if n < 16384 else varint(n)) + payload


class GatewayRecord(SpanRecord):
    """A record whose ``source`` is the span's serialized bytes; ``origin`` is the shared
    (resource part, scope part) of the ``ResourceSpans``/``ScopeSpans`` it came in, already encoded."""

    __slots__ = ("origin",)
    origin: tuple[bytes, bytes]


def _match_keys(spec: MatchSpec | None) -> list[str]:
    return [spec.attribute] if spec is not None and spec.attribute is not None else []


def attribute_keys(config: ChronographConfig) -> frozenset[str]:
    """Every span attribute key derivation can read under ``config``."""
    keys = set(_ALWAYS)
    for rule in config.laps.match:
        keys.update(_match_keys(rule))
    for srule in config.sectors.rules:
        keys.update(_match_keys(srule.match))
        if srule.name_from is not None:
            keys.add(srule.name_from)
    ident = config.laps.identity
    for sources in (ident.customer, ident.tier, ident.command, ident.score, ident.session):
        for s in sources:
            # In the gateway a baggage source reads the span attribute of that name: what the upstream
            # BaggageSpanProcessor writes (OTLP carries no baggage).
            for key in (s.attribute, s.baggage):
                if key is not None:
                    keys.add(key)
    return frozenset(keys)


def _marker(key: str) -> bytes:
    raw = key.encode()
    return b"\n" + varint(len(raw)) + raw


def _origin_parts(rs: Any, ss: Any) -> tuple[bytes, bytes]:
    """The encoded non-span fields of a ResourceSpans (resource, schema_url) and of a ScopeSpans
    (scope, schema_url): spans regrouped for export get exactly these back."""
    res = ld(b"\x0a", rs.resource.SerializeToString()) if rs.HasField("resource") else b""
    if rs.schema_url:
        res += ld(b"\x1a", rs.schema_url.encode())
    scope = ld(b"\x0a", ss.scope.SerializeToString()) if ss.HasField("scope") else b""
    if ss.schema_url:
        scope += ld(b"\x1a", ss.schema_url.encode())
    return res, scope


class LeanDecoder:
    """Records of ``ResourceSpans`` messages with only the attributes ``config`` can read."""

    def __init__(self, config: ChronographConfig) -> None:
        self.keys = attribute_keys(config)
        self._probe = re.compile(b"|".join(re.escape(_marker(k)) for k in sorted(self.keys))).search

    def records(self, resource_spans: Iterable[Any]) -> list[GatewayRecord]:
        """Raises :class:`otel_chronograph.sources.OTLPError` (bad ids) before returning anything."""
        out: list[GatewayRecord] = []
        append = out.append
        keys, probe = self.keys, self._probe
        from_bytes, kinds, last_tid, trace_id = int.from_bytes, _KINDS, b"", 0
        for rs in resource_spans:
            resource = ({kv.key: value_from_proto(kv.value) for kv in rs.resource.attributes}
                        if rs.HasField("resource") else {})
            for ss in rs.scope_spans:
                origin = _origin_parts(rs, ss)
                for s in ss.spans:
                    raw = s.SerializeToString()
                    attrs: Any = EMPTY
                    if probe(raw) is not None:
                        found = {kv.key: value_from_proto(kv.value) for kv in s.attributes if kv.key in keys}
                        if found:
                            attrs = found
                    tid = s.trace_id
                    if tid != last_tid:  # a request's spans come in runs of one trace: convert once
                        trace_id = _id(tid, "trace_id", 16)
                        last_tid = tid
                    sid = s.span_id
                    if len(sid) != 8:
                        _id(sid, "span_id", 8)
                    parent_raw = s.parent_span_id
                    status = s.status
                    error = status.code == _STATUS_ERROR
                    start = s.start_time_unix_nano
                    kind = s.kind
                    flags = s.flags
                    r = GatewayRecord(
                        trace_id, from_bytes(sid, "big"),
                        _id(parent_raw, "parent_span_id", 8) if parent_raw else None,
                        s.name, kinds[kind] if 0 <= kind < 6 else INTERNAL, start,
                        s.end_time_unix_nano or start, attrs,
                        [EventRecord(e.name, e.time_unix_nano,
                                     {kv.key: value_from_proto(kv.value) for kv in e.attributes})
                         for e in s.events] if len(s.events) else (),
                        error, status.message if error and status.message else None, resource,
                        bool(flags & 0x200) if flags & 0x100 else None, raw)
                    r.origin = origin
                    append(r)
        return out
