"""Span matchers compiled from config: which spans are laps, which spans are which sector.

Matching is on name glob, span kind and attribute presence/value. Lap rules are evaluated when a span
starts (as a sampler would: only start attributes are known), sector rules when the lap is derived.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.trace import SpanKind, StatusCode

from ._config import LapRule, MatchSpec, SectorRule

__all__ = ["Matcher", "SpanRecord", "attributes_of", "compile_lap_rules", "compile_match",
           "compile_sector_rules"]

class SpanRecord:
    """What derivation needs of a finished span, and nothing else.

    A pending lap keeps its ended spans until its root ends; the SDK's span objects weigh about 3 KB
    each, this about a tenth (the attribute dict is shared, not copied).
    """

    __slots__ = ("attributes", "end_time", "error", "events", "kind", "name", "parent_id", "span_id",
                 "start_time")

    def __init__(self, span_id: int, parent_id: int | None, start_time: int, end_time: int, name: str,
                 kind: SpanKind, attributes: Mapping[str, Any], events: Sequence[Any], error: bool) -> None:
        self.span_id = span_id
        self.parent_id = parent_id
        self.start_time = start_time
        self.end_time = end_time
        self.name = name
        self.kind = kind
        self.attributes = attributes
        self.events = events
        self.error = error

    @classmethod
    def of(cls, span: Any) -> SpanRecord:
        """From a ``ReadableSpan`` (a ``SpanRecord`` is returned as it is)."""
        if type(span) is cls:
            return span
        ctx = span.context
        parent = span.parent
        start = span.start_time or 0
        return cls(ctx.span_id, parent.span_id if parent is not None else None, start,
                   span.end_time or start, span.name, span.kind, attributes_of(span), span.events or (),
                   span.status.status_code is StatusCode.ERROR)


Matcher = Callable[[str, SpanKind, Mapping[str, Any] | None], bool]

_MISSING = object()
_EMPTY: Mapping[str, Any] = {}


def attributes_of(span: Any) -> Mapping[str, Any]:
    """A span's attributes as a plain dict, read-only by convention.

    ``ReadableSpan.attributes`` wraps the SDK's ``BoundedAttributes`` in a new proxy on every call, and
    a lookup of a missing key goes through ``KeyError``: on the per-span path that is most of the cost.
    The SDK keeps a plain dict inside; fall back to the public property if that ever changes.
    """
    if type(span) is SpanRecord:
        return span.attributes
    inner = getattr(getattr(span, "_attributes", None), "_dict", None)
    if isinstance(inner, dict):
        return inner
    return span.attributes or _EMPTY


def _value_equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected or str(actual).lower() == str(expected).lower()
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return bool(actual == expected)
    return str(actual) == str(expected)


def compile_match(spec: MatchSpec) -> Matcher:
    """Turn a ``MatchSpec`` into a fast predicate over (name, kind, attributes)."""
    name_re = re.compile(fnmatch.translate(spec.name)).match if spec.name is not None else None
    kind = SpanKind[spec.kind] if spec.kind is not None else None
    attribute = spec.attribute
    expected = spec.value

    def match(name: str, span_kind: SpanKind, attributes: Mapping[str, Any] | None) -> bool:
        if kind is not None and span_kind is not kind:
            return False
        if name_re is not None and name_re(name) is None:
            return False
        if attribute is not None:
            actual = attributes.get(attribute, _MISSING) if attributes else _MISSING
            if actual is _MISSING:
                return False
            if expected is not None and not _value_equal(actual, expected):
                return False
        return True

    return match


def compile_sector_rules(
    rules: Sequence[SectorRule],
) -> Callable[[str, SpanKind, Mapping[str, Any] | None], str | None]:
    """First matching rule names the sector; ``None`` when no rule matches."""
    compiled = [(rule.name, compile_match(rule.match)) for rule in rules]

    def sector_for(name: str, kind: SpanKind, attributes: Mapping[str, Any] | None) -> str | None:
        for sector, match in compiled:
            if match(name, kind, attributes):
                return sector
        return None

    return sector_for


def compile_lap_rules(
    rules: Sequence[LapRule],
) -> Callable[[str, SpanKind, Mapping[str, Any] | None], tuple[bool, str | None]]:
    """(is a lap, command override) for a starting span, by the first matching rule."""
    compiled = [(rule.command, compile_match(rule)) for rule in rules]

    def lap_for(name: str, kind: SpanKind, attributes: Mapping[str, Any] | None) -> tuple[bool, str | None]:
        for command, match in compiled:
            if match(name, kind, attributes):
                return True, command
        return False, None

    lap_for.has_rules = bool(compiled)  # type: ignore[attr-defined]  # lets assembly skip the call
    return lap_for
