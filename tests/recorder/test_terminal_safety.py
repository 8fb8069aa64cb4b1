"""Issue 9 item 6: hostile span names, commands, sectors and event text recorded by the flight recorder
reach `chronograph laps`, `chronograph show` and the TUI as visible text: never as terminal control
sequences, never as Rich/Textual markup (no MarkupError), never as a forged row."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.text import Text
from textual.widgets import DataTable, Static

import otel_chronograph as chrono
from otel_chronograph._cli import main
from otel_chronograph._text import safe
from otel_chronograph.recorder import FlightStore
from otel_chronograph.recorder._tui import FlightRecorderApp, StoreSource, TimelineScreen

from ..terminal import HOSTILE, run_in_pty, terminal_env, unsafe_characters
from .helpers import CHRONOGRAPH, recording

VISIBLE = ("[/]", "[link=https://evil.example/]x[/link]", "[bold]loud", "\\x1b]0;pwned\\x07", "\\x9b31mred",
           "\\nLAP TIME: 0.1ms GREEN", "\\u202etxt.exe")


@pytest.fixture(scope="module")
def hostile_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[str]]]:
    """Laps recorded through the real pipeline whose command, tier, sector, span, event name and
    attribute are each hostile text."""
    path = tmp_path_factory.mktemp("hostile") / "hostile.db"
    ids = []
    with recording(persistent=True, path=str(path)) as (provider, _, _):
        tracer = provider.get_tracer("hostile")
        for text in HOSTILE:
            with chrono.lap(text, tier=text, tracer_provider=provider) as handle, \
                    chrono.sector(text, tracer_provider=provider):
                handle.event(text, **{text: text})
                with tracer.start_as_current_span(text):
                    pass
            ids.append(handle.request_id)
    yield path, ids


def _plain(out: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", out.replace("\r\n", "\n"))


def test_laps_on_a_terminal(hostile_db: tuple[Path, list[str]]) -> None:
    db, ids = hostile_db
    code, out = run_in_pty([CHRONOGRAPH, "laps", "--last", "50", "--db", str(db)], terminal_env())
    assert code == 0, out
    assert "\x1b[" in out  # status colours: it really was a terminal
    assert unsafe_characters(out) == [], out
    lines = _plain(out).splitlines()
    assert len(lines) == len(ids), lines  # one line per lap: nothing forged
    assert sorted(line.split()[2] for line in lines) == sorted(ids)
    for shown in VISIBLE:
        assert any(shown in line for line in lines), (shown, lines)


def test_laps_piped(hostile_db: tuple[Path, list[str]]) -> None:
    db, ids = hostile_db
    out = CliRunner().invoke(main, ["laps", "--last", "50", "--db", str(db)])
    assert out.exit_code == 0, out.output
    assert unsafe_characters(out.output) == [] and "\x1b" not in out.output
    assert len(out.output.splitlines()) == len(ids)


def _check_timeline(text: str, request_id: str) -> None:
    assert unsafe_characters(text) == [], text
    lines = _plain(text).splitlines()
    assert lines[0] == f"REQUEST TIMELINE: {request_id}"
    for line in lines[1:]:  # a newline in hostile text would start a line of its own
        assert line == "" or line.startswith(("[", "  ", "SUMMARY:")), (line, lines)


def test_show_piped_for_every_hostile_lap(hostile_db: tuple[Path, list[str]]) -> None:
    db, ids = hostile_db
    seen = ""
    for request_id in ids:
        out = CliRunner().invoke(main, ["show", request_id, "--db", str(db)])
        assert out.exit_code == 0, out.output
        _check_timeline(out.output, request_id)
        seen += out.output
        folded = CliRunner().invoke(main, ["show", request_id, "--folded", "--db", str(db)])
        assert folded.exit_code == 0 and unsafe_characters(folded.output) == [], folded.output
    for shown in VISIBLE:
        assert shown in seen, shown


@pytest.mark.parametrize("which", [0, 2, 5, 8])  # window title, hyperlink, "[/]", forged row
def test_show_on_a_terminal(hostile_db: tuple[Path, list[str]], which: int) -> None:
    db, ids = hostile_db
    code, out = run_in_pty([CHRONOGRAPH, "show", ids[which], "--db", str(db)], terminal_env())
    assert code == 0, out
    _check_timeline(out, ids[which])


def _cell(value: object) -> str:
    return value.plain if isinstance(value, Text) else str(value)


async def test_tui_shows_hostile_text_literally(hostile_db: tuple[Path, list[str]]) -> None:
    db, ids = hostile_db
    with FlightStore(db) as store:
        app = FlightRecorderApp(StoreSource(store), n=len(ids))
        async with app.run_test(size=(200, 40)) as pilot:
            await pilot.pause()
            table = app.query_one("#laps", DataTable)
            assert table.row_count == len(ids)
            commands = {_cell(table.get_row_at(r)[2]) for r in range(table.row_count)}
            assert commands == {safe(text) for text in HOSTILE}
            rendered = app.export_screenshot()  # the list actually rendered, markup-like names included
            assert "evil.example" in rendered
            for row in range(table.row_count):
                table.move_cursor(row=row)
                await pilot.press("enter")
                await pilot.pause()
                assert isinstance(app.screen, TimelineScreen)
                title = str(app.screen.query_one("#title", Static).render())
                timeline = str(app.screen.query_one("#timeline", Static).render())
                assert unsafe_characters(title + timeline) == [], (title, timeline)
                assert safe(HOSTILE[ids.index(app.screen.document["id"])]) in title
                await pilot.press("escape")
                await pilot.pause()
