"""Issue 9 item 2, the recorder's side: 16 threads making laps while shutdown() runs with a persistent
flight recorder. Laps finished around and after shutdown used to vanish from the recorder with every
failure count at 0. Now: no crash, and every lap is in the database or counted as dropped."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.shutdown_race import race_shutdown


def test_laps_racing_shutdown_reach_the_recorder_or_are_counted(tmp_path: Path) -> None:
    for run in range(5):
        db = tmp_path / f"flight{run}.db"
        counts = race_shutdown({"recorder": {"enabled": True, "persistent": True, "path": str(db)}})
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT count(*) FROM flight_records").fetchone()[0]
        assert counts["write_failures"] == 0
        assert rows + counts["sink_dropped"] + counts["store_dropped"] == counts["made"], (run, rows, counts)
        assert rows >= 400
