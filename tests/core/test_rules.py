"""Span matchers from config: name glob, kind, attribute presence and value; first match wins."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import SpanKind

from otel_chronograph._config import LapRule, MatchSpec, SectorRule
from otel_chronograph.engine._rules import compile_lap_rules, compile_match, compile_sector_rules


def m(**spec: Any) -> Any:
    return compile_match(MatchSpec(**spec))


@pytest.mark.parametrize(
    ("pattern", "name", "hit"),
    [("GET *", "GET /users", True), ("GET *", "POST /users", False), ("*.query", "db.query", True),
     ("job-?", "job-1", True), ("job-?", "job-12", False), ("exact", "exact", True),
     ("exact", "exactly", False),
     ("[ab]*", "alpha", True), ("[ab]*", "gamma", False), ("*", "", True)],
)
def test_name_glob(pattern: str, name: str, hit: bool) -> None:
    assert m(name=pattern)(name, SpanKind.INTERNAL, {}, {}) is hit


def test_kind() -> None:
    match = m(kind="CLIENT")
    assert match("x", SpanKind.CLIENT, None, {})
    assert not match("x", SpanKind.SERVER, None, {})


def test_attribute_presence_and_value() -> None:
    present = m(attribute="db.system")
    assert present("q", SpanKind.CLIENT, {"db.system": "sqlite"}, {})
    assert present("q", SpanKind.CLIENT, {"db.system": ""}, {})  # presence, whatever the value
    assert not present("q", SpanKind.CLIENT, {"other": 1}, {})
    assert not present("q", SpanKind.CLIENT, None, {})
    valued = m(attribute="db.system", value="sqlite")
    assert valued("q", SpanKind.CLIENT, {"db.system": "sqlite"}, {})
    assert not valued("q", SpanKind.CLIENT, {"db.system": "postgresql"}, {})


@pytest.mark.parametrize(
    ("expected", "actual", "hit"),
    [(200, 200, True), (200, 200.0, True), (200, "200", True), (200, 201, False), (True, True, True),
     (True, "true", True), (False, True, False), (True, 1, False), ("x", "x", True), (1.5, 1.5, True)],
)
def test_value_equality_across_types(expected: Any, actual: Any, hit: bool) -> None:
    assert m(attribute="a", value=expected)("n", SpanKind.INTERNAL, {"a": actual}, {}) is hit


def test_every_given_field_must_hold() -> None:
    match = m(name="GET *", kind="CLIENT", attribute="http.url")
    assert match("GET x", SpanKind.CLIENT, {"http.url": "u"}, {})
    assert not match("GET x", SpanKind.SERVER, {"http.url": "u"}, {})
    assert not match("PUT x", SpanKind.CLIENT, {"http.url": "u"}, {})
    assert not match("GET x", SpanKind.CLIENT, {}, {})


def test_sector_rules_first_match_wins() -> None:
    rules = [SectorRule(name="storage", match=MatchSpec(attribute="db.system")),
             SectorRule(name="backend", match=MatchSpec(kind="CLIENT")),
             SectorRule(name="never", match=MatchSpec(kind="CLIENT", attribute="db.system"))]
    sector_for = compile_sector_rules(rules)
    assert sector_for("SELECT", SpanKind.CLIENT, {"db.system": "sqlite"}, {}) == "storage"
    assert sector_for("GET", SpanKind.CLIENT, {}, {}) == "backend"
    assert sector_for("work", SpanKind.INTERNAL, {}, {}) is None
    assert compile_sector_rules([])("x", SpanKind.CLIENT, {}, {}) is None


def test_lap_rules_give_the_command_of_the_first_match() -> None:
    lap_for = compile_lap_rules([LapRule(name="tool.*", command="tool call"), LapRule(name="tool.grep"),
                                 LapRule(kind="PRODUCER")])
    assert lap_for("tool.grep", SpanKind.INTERNAL, {}, {}) == (True, "tool call")
    assert lap_for("send", SpanKind.PRODUCER, {}, {}) == (True, None)
    assert lap_for("other", SpanKind.INTERNAL, {}, {}) == (False, None)
    assert compile_lap_rules([])("x", SpanKind.SERVER, {}, {}) == (False, None)
