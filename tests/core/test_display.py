"""The split-time table: plain ASCII off a terminal or with NO_COLOR, Rich on a terminal, JSON lines."""

from __future__ import annotations

import io
import json
import re

import pytest
from opentelemetry.trace import Status, StatusCode

from otel_chronograph._config import DisplayConfig
from otel_chronograph._display import SplitTimeDisplay, render_plain

from .conftest import Harness
from .helpers import ROOT_ID, deriver, root, sec


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def lap_with_gap(**kw: object):  # type: ignore[no-untyped-def]
    d = deriver({"billing": {"rates": {"faf score": "0.001"}}})
    return d.derive(root(0, 250, attributes={"chronograph.tier": "pro"}, **kw),
                    [sec("init", 1, ROOT_ID, 0, 45), sec("load", 2, ROOT_ID, 45, 165),
                     sec("exec", 3, ROOT_ID, 170, 240)])


def test_plain_table() -> None:
    text = render_plain(lap_with_gap())
    lines = text.splitlines()
    assert lines[0] == "FAF SCORE - Chronograph"
    assert re.search(r"Sector 1: init\s+\[\s+45\.0ms\]", text)
    assert re.search(r"Sector 2: load\s+\[\s+120\.0ms\]", text)
    assert re.search(r"Sector 3: exec\s+\[\s+70\.0ms\]", text)
    assert re.search(r"Other\s+\[\s+15\.0ms\]", text)
    assert "LAP TIME: 250.0ms YELLOW" in text
    assert "Request: req_7f8a9b0c1d2e3f40" in text
    assert "Cost: 0.001000 (pro)" in text  # costs for people: always 6 decimals (_vocab.format_cost)
    assert text.isascii()


def test_plain_table_flags_errors_and_omits_zero_other() -> None:
    d = deriver()
    lap = d.derive(root(0, 10, status=Status(StatusCode.ERROR)), [sec("a", 1, ROOT_ID, 0, 10)])
    text = render_plain(lap)
    assert "LAP TIME: 10.0ms RED ERROR" in text
    assert "Other" not in text
    assert "Cost" not in text


def test_not_a_terminal_is_plain() -> None:
    out = io.StringIO()
    SplitTimeDisplay(DisplayConfig(), stream=out)(lap_with_gap())
    assert out.getvalue() == render_plain(lap_with_gap())


def test_terminal_gets_rich_and_no_color_gets_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    out = Tty()
    SplitTimeDisplay(DisplayConfig(), stream=out)(lap_with_gap())
    rich_text = out.getvalue()
    assert "\x1b[" in rich_text  # colour on a terminal
    assert "LAP TIME" in rich_text and "req_7f8a9b0c1d2e3f40" in rich_text and "YELLOW" in rich_text
    monkeypatch.setenv("NO_COLOR", "1")
    out = Tty()
    SplitTimeDisplay(DisplayConfig(), stream=out)(lap_with_gap())
    assert out.getvalue() == render_plain(lap_with_gap())


def test_json_format_and_off() -> None:
    out = io.StringIO()
    SplitTimeDisplay(DisplayConfig(format="json"), stream=out)(lap_with_gap())
    assert json.loads(out.getvalue()) == lap_with_gap().to_json()
    out = io.StringIO()
    SplitTimeDisplay(DisplayConfig(format="off"), stream=out)(lap_with_gap())
    assert out.getvalue() == ""


def test_split_times_sink_installed_by_config(make_harness, capsys: pytest.CaptureFixture[str]) -> None:  # type: ignore[no-untyped-def]
    h: Harness = make_harness({"display": {"stream": "stdout"}}, split_times=True)
    with h.lap("faf score") as handle, h.sector("init"):
        pass
    out = capsys.readouterr().out
    assert "FAF SCORE - Chronograph" in out and handle.telemetry.request_id in out
    quiet: Harness = make_harness({"display": {"stream": "stdout"}}, split_times=False)
    with quiet.lap("faf score"):
        pass
    assert capsys.readouterr().out == ""
