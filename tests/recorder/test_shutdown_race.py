"""Issue 9 item 2, the recorder's side: 16 threads making laps while shutdown() runs with a persistent
flight recorder. Before, the laps finished around and after shutdown vanished from the recorder with
every failure count at 0. Now: no crash, and every lap is in the database or counted as dropped."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

CHILD = r'''
import sys, threading
from opentelemetry.sdk.trace import TracerProvider
import otel_chronograph as chrono
from otel_chronograph.recorder import get_recorder
provider = TracerProvider()
proc = chrono.install(provider, config={"recorder": {"enabled": True, "persistent": True,
                                                     "path": sys.argv[1]}})
store = get_recorder().store
stop = threading.Event()
made = [0] * 16
def work(i):
    while not stop.is_set():
        with chrono.lap("cmd", tracer_provider=provider):
            pass
        made[i] += 1
threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
for t in threads: t.start()
while sum(made) < 400: pass
proc.shutdown()
stop.set()
for t in threads: t.join()
store.close()
print(sum(made), proc.stats["sink_queue_dropped"], store.dropped, store.write_failures)
'''


def test_laps_racing_shutdown_reach_the_recorder_or_are_counted(tmp_path: Path) -> None:
    for run in range(5):
        db = tmp_path / f"flight{run}.db"
        out = subprocess.run([sys.executable, "-c", CHILD, str(db)], capture_output=True, text=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        made, engine_dropped, store_dropped, failures = map(int, out.stdout.split())
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT count(*) FROM flight_records").fetchone()[0]
        assert failures == 0
        assert rows + engine_dropped + store_dropped == made, (run, rows, engine_dropped, store_dropped, made)
        assert rows >= 400
