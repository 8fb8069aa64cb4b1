"""Span matchers compiled from config: which spans are laps, which spans are which sector, who the
lap is for (identity).

Matching is on name glob, span kind, and span or resource attribute presence/value. Lap rules are
evaluated when a span starts in-process (as a sampler would: only start attributes are known) and on
ended spans for the other sources; sector rules when the lap is derived.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from opentelemetry.trace import SpanKind

from .._config import IdentitySource, LapRule, MatchSpec, SectorRule

__all__ = ["Matcher", "compile_identity", "compile_lap_rules", "compile_match", "compile_sector_rules",
           "first_value"]

Attrs = Mapping[str, Any]
Matcher = Callable[[str, SpanKind, Attrs, Attrs], bool]
SectorFor = Callable[[str, SpanKind, Attrs, Attrs], "str | None"]
LapFor = Callable[[str, SpanKind, Attrs, Attrs], "tuple[bool, str | None]"]

_MISSING = object()


def first_value(value: Any) -> Any:
    """A sequence value counts as its first element (HTTP header attributes are lists)."""
    if isinstance(value, (list, tuple)):
        return value[0] if value else None
    return value


def _value_equal(actual: Any, expected: Any) -> bool:
    actual = first_value(actual)
    if isinstance(expected, bool) or isinstance(actual, bool):
        return actual is expected or str(actual).lower() == str(expected).lower()
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return bool(actual == expected)
    return str(actual) == str(expected)


def compile_match(spec: MatchSpec) -> Matcher:
    """Turn a ``MatchSpec`` into a predicate over (name, kind, attributes, resource attributes)."""
    name_re = re.compile(fnmatch.translate(spec.name)).match if spec.name is not None else None
    kind = SpanKind[spec.kind] if spec.kind is not None else None
    attribute = spec.attribute
    resource_key = spec.resource
    expected = spec.value

    def present(mapping: Attrs, key: str | None) -> bool:
        if key is None:
            return True
        actual = mapping.get(key, _MISSING) if mapping else _MISSING
        if actual is _MISSING:
            return False
        return expected is None or _value_equal(actual, expected)

    def match(name: str, span_kind: SpanKind, attributes: Attrs, resource: Attrs) -> bool:
        if kind is not None and span_kind is not kind:
            return False
        if name_re is not None and name_re(name) is None:
            return False
        return present(attributes, attribute) and present(resource, resource_key)

    return match


def _always(name: str, kind: SpanKind, attributes: Attrs, resource: Attrs) -> bool:
    return True


def compile_sector_rules(rules: Sequence[SectorRule]) -> SectorFor:
    """First matching rule names the sector (fixed, or from an attribute); ``None`` when none matches."""
    compiled: list[tuple[str | None, str | None, Matcher]] = [
        (rule.name, rule.name_from, compile_match(rule.match) if rule.match is not None else _always)
        for rule in rules]

    def sector_for(name: str, kind: SpanKind, attributes: Attrs, resource: Attrs) -> str | None:
        for sector, name_from, match in compiled:
            if not match(name, kind, attributes, resource):
                continue
            if name_from is None:
                return sector
            value = first_value(attributes.get(name_from)) if attributes else None
            if value is None and resource:
                value = first_value(resource.get(name_from))
            if value is not None and value != "":
                return str(value)
        return None

    return sector_for


def compile_lap_rules(rules: Sequence[LapRule]) -> LapFor:
    """(is a lap, command override) for a span, by the first matching rule."""
    compiled = [(rule.command, compile_match(rule)) for rule in rules]

    def lap_for(name: str, kind: SpanKind, attributes: Attrs, resource: Attrs) -> tuple[bool, str | None]:
        for command, match in compiled:
            if match(name, kind, attributes, resource):
                return True, command
        return False, None

    lap_for.has_rules = bool(compiled)  # type: ignore[attr-defined]  # lets assembly skip the call
    return lap_for


IdentityFor = Callable[[Attrs, Attrs, Attrs], Any]


def compile_identity(sources: Sequence[IdentitySource]) -> IdentityFor | None:
    """The first value found in (span attributes, resource attributes, baggage), or None; None when
    no source is configured (derivation skips the call)."""
    if not sources:
        return None
    plan = [(0, s.attribute) if s.attribute is not None else (1, s.resource) if s.resource is not None
            else (2, s.baggage) for s in sources]

    def lookup(attributes: Attrs, resource: Attrs, baggage: Attrs) -> Any:
        where = (attributes, resource, baggage)
        for index, key in plan:
            mapping = where[index]
            if mapping and key is not None:
                value = first_value(mapping.get(key))
                if value is not None and value != "":
                    return value
        return None

    return lookup
