"""The Textual UI driven by a pilot: the list shows the laps, selecting one shows its timeline."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.widgets import DataTable, Static
from textual.widgets._footer import FooterKey

from otel_chronograph.recorder import FlightStore
from otel_chronograph.recorder._tui import FlightRecorderApp, HttpSource, StoreSource, TimelineScreen, lap_bar

from .helpers import server_process, synthetic_lap


def _store(path: Path) -> FlightStore:
    store = FlightStore(path)
    store.add_many([synthetic_lap(i, lap_ms=5.0 * i, status=("RED", "GREEN", "YELLOW")[i % 3],
                                  command=f"cmd {i}") for i in range(1, 13)])
    return store


def _cells(table: DataTable[object], row: int) -> list[str]:
    return [c.plain if isinstance(c, Text) else str(c) for c in table.get_row_at(row)]


async def test_list_shows_the_last_ten_and_enter_opens_the_timeline(tmp_path: Path) -> None:
    with _store(tmp_path / "tui.db") as store:
        app = FlightRecorderApp(StoreSource(store))
        async with app.run_test(size=(140, 40)) as pilot:
            table = app.query_one("#laps", DataTable)
            assert table.row_count == 10
            first = _cells(table, 0)
            assert first[1] == f"req_{12:016x}" and first[2] == "cmd 12" and first[5] == "RED"
            assert first[4].count("█") == 24  # the longest lap has the full bar
            assert _cells(table, 9)[1] == f"req_{3:016x}"
            status_cell = table.get_row_at(0)[5]
            assert isinstance(status_cell, Text) and "red" in str(status_cell.style)
            await pilot.pause()
            footer_keys = {k.key for k in app.query(FooterKey)}
            assert {"enter", "r", "p", "q"} <= footer_keys

            await pilot.press("down", "down")
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, TimelineScreen)
            text = str(app.screen.query_one("#timeline", Static).render())
            assert text.startswith(f"REQUEST TIMELINE: req_{10:016x}")
            assert "➜ Embedding Classifier" in text and "SUMMARY:" in text

            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, TimelineScreen)

            store.add(synthetic_lap(50, lap_ms=1.0, command="fresh"))  # live: the next refresh shows it
            await pilot.press("r")
            assert _cells(table, 0)[2] == "fresh"


async def test_reads_from_the_http_api(tmp_path: Path) -> None:
    _store(tmp_path / "http.db").close()
    with server_process(tmp_path / "http.db") as url:
        app = FlightRecorderApp(HttpSource(url))
        async with app.run_test(size=(140, 40)) as pilot:
            table = app.query_one("#laps", DataTable)
            assert table.row_count == 10
            await pilot.click("#laps", offset=(10, 1))  # a click on the first data row (below the header)
            await pilot.press("enter")
            await pilot.pause()
            assert isinstance(app.screen, TimelineScreen)
            assert app.screen.document["id"] == f"req_{12:016x}"


def test_bars_scale_with_the_lap_time() -> None:
    assert lap_bar(10, 10, "RED").plain == "█" * 24
    assert lap_bar(5, 10, "GREEN").plain == "█" * 12 + "·" * 12
    assert lap_bar(0.0001, 10, "GREEN").plain.startswith("█·")
