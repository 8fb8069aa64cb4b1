"""The flight recorder's terminal UI (Textual, ``tui`` extra): the last 10 laps, live; Enter opens one."""

from __future__ import annotations

import os
from typing import Any, ClassVar, Protocol

import httpx
from rich.markup import escape
from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from .._text import rich_text, safe, safe_lines
from .._vocab import STATUS_COLOURS, format_ms
from ._render import record_document, summary_item
from ._store import FlightStore

__all__ = ["FlightRecorderApp", "HttpSource", "Source", "StoreSource", "TimelineScreen"]

BAR_WIDTH = 24


class Source(Protocol):
    """Where the UI reads records from: a store (database) or the HTTP API."""

    def recent(self, n: int) -> list[dict[str, Any]]: ...

    def detail(self, ident: str) -> dict[str, Any] | None: ...


class StoreSource:
    def __init__(self, store: FlightStore) -> None:
        self.store = store

    def recent(self, n: int) -> list[dict[str, Any]]:
        return [summary_item(r) for r in self.store.recent(n)]

    def detail(self, ident: str) -> dict[str, Any] | None:
        record = self.store.get(ident)
        return None if record is None else record_document(record, self.store.compare(record))


class HttpSource:
    """Reads ``/api/v1/flight-recorder``; sends ``$CHRONOGRAPH_API_TOKEN`` as a bearer token if set."""

    def __init__(self, url: str, token: str | None = None, timeout_s: float = 5.0) -> None:
        token = token if token is not None else os.environ.get("CHRONOGRAPH_API_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s)

    def recent(self, n: int) -> list[dict[str, Any]]:
        r = self.client.get("/api/v1/flight-recorder", params={"n": n})
        r.raise_for_status()
        return list(r.json()["records"])

    def detail(self, ident: str) -> dict[str, Any] | None:
        r = self.client.get(f"/api/v1/flight-recorder/{ident}")
        if r.status_code == 404:
            return None
        r.raise_for_status()
        return dict(r.json())


def lap_bar(lap_ms: float, longest: float, status: str) -> Text:
    """A bar proportional to the lap time (relative to the longest shown), in the status colour."""
    filled = 0 if longest <= 0 else max(1, round(BAR_WIDTH * lap_ms / longest))
    return Text("█" * filled + "·" * (BAR_WIDTH - filled), style=STATUS_COLOURS.get(status, ""))


class TimelineScreen(Screen[None]):
    """One lap: its timeline and summary (the text rendering). Everything from the record is shown as
    literal ``Text`` (escaped: it may come from a remote API), never as markup."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("backspace", "app.pop_screen", "Back", show=False),
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self, document: dict[str, Any]) -> None:
        super().__init__()
        self.document = document

    def compose(self) -> ComposeResult:
        doc = self.document
        yield Header()
        title = rich_text(f"{doc['command']}  {doc['id']}  ", style="bold")
        title.append(safe(doc["status"]), style=f"bold {STATUS_COLOURS.get(doc['status'], '')}")
        if doc.get("anomaly"):
            title.append("  ANOMALY", style="bold magenta")
        yield Static(title, id="title")
        with VerticalScroll():
            yield Static(Text(safe_lines(doc["text"])), id="timeline")
        yield Footer()


class FlightRecorderApp(App[None]):
    """Last 10 laps, refreshed live; Enter opens the selected lap's timeline. Cells are ``Text``, not
    markup strings: a command named ``[/]`` is shown as such (a string cell would raise MarkupError)."""

    TITLE = "chronograph flight recorder"
    CSS = "#title { padding: 0 1; } #timeline { padding: 1 2; }"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open timeline", priority=True),
        Binding("r", "refresh", "Refresh"),
        Binding("p", "pause", "Pause/resume"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, source: Source, n: int = 10, interval_s: float = 1.0) -> None:
        super().__init__()
        self.source = source
        self.n = n
        self.interval_s = interval_s
        self.paused = False
        self.rows: list[dict[str, Any]] = []
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield DataTable(id="laps", cursor_type="row", zebra_stripes=True)
        yield Static("", id="status-line")
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#laps", DataTable)
        table.add_columns("Time (UTC)", "Request", "Command", "Lap", "", "Status")
        self.action_refresh()
        self.set_interval(self.interval_s, self._tick)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # "Open timeline" only where there is a list to open from.
        return self.screen is self.screen_stack[0] if action == "open" else True

    def _tick(self) -> None:
        if not self.paused and self.screen is self.screen_stack[0]:
            self.action_refresh()

    def action_refresh(self) -> None:
        try:
            rows = self.source.recent(self.n)
            self.error = None
        except Exception as exc:  # keep the UI alive when the API or database is away
            self.error = f"cannot read records: {exc}"
            rows = self.rows
        self.rows = rows
        table = self.query_one("#laps", DataTable)
        keep = table.cursor_row
        table.clear()
        longest = max((r["lap_ms"] for r in rows), default=0.0)
        for r in rows:
            colour = STATUS_COLOURS.get(r["status"], "")
            table.add_row(
                rich_text(r["timestamp"][11:23]), rich_text(r["id"]), rich_text(r["command"]),
                format_ms(r["lap_ms"]), lap_bar(r["lap_ms"], longest, r["status"]),
                rich_text(r["status"] + (" ✖" if r.get("error") else ""), style=f"bold {colour}"),
                key=r["id"],
            )
        if rows:
            table.move_cursor(row=min(keep, len(rows) - 1))
        line = self.error or (f"{len(rows)} laps" + ("  (paused)" if self.paused else "  (live)"))
        self.query_one("#status-line", Static).update(rich_text(line))

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.action_refresh()

    def action_open(self) -> None:
        if self.screen is not self.screen_stack[0]:
            return
        table = self.query_one("#laps", DataTable)
        if table.row_count:
            self.open_record(self.rows[table.cursor_row]["id"])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.open_record(event.row_key.value)

    def open_record(self, ident: str) -> None:
        try:
            doc = self.source.detail(ident)
        except Exception as exc:
            self.notify(escape(safe(f"cannot read {ident}: {exc}")), severity="error")
            return
        if doc is None:
            self.notify(escape(safe(f"{ident} is gone (retention)")), severity="warning")
            return
        self.push_screen(TimelineScreen(doc))
