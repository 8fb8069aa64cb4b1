"""16 threads making laps while ``shutdown()`` runs, in a fresh interpreter (a segfault is exit -11):
the harness shared by the billing and flight-recorder race tests (issue 9 item 2)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

__all__ = ["race_shutdown"]

CHILD = r'''
import json, sys, threading
from opentelemetry.sdk.trace import TracerProvider
import otel_chronograph as chrono
from otel_chronograph.recorder import get_recorder
provider = TracerProvider()
proc = chrono.install(provider, config=json.loads(sys.argv[1]))
recorder = get_recorder()
stop = threading.Event()
made = [0] * 16
def work(i):
    while not stop.is_set():
        with chrono.lap("cmd", customer=f"cus_{i}", tier="pro", tracer_provider=provider):
            pass
        made[i] += 1
threads = [threading.Thread(target=work, args=(i,)) for i in range(16)]
for t in threads: t.start()
while sum(made) < 400: pass
proc.shutdown()
stop.set()
for t in threads: t.join()
stats = proc.stats
out = {"made": sum(made), "sink_dropped": stats["sink_queue_dropped"], "derived": stats["laps_derived"]}
if recorder is not None:
    recorder.store.close()
    out.update(store_dropped=recorder.store.dropped, write_failures=recorder.store.write_failures)
print(json.dumps(out))
'''


def race_shutdown(config: dict[str, Any]) -> dict[str, int]:
    """Run the race once with ``config``; the child's counts (``made``, ``sink_dropped``, ``derived``,
    and with a recorder ``store_dropped`` and ``write_failures``)."""
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(config)], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]  # a segfault is -11
    return json.loads(out.stdout)  # type: ignore[no-any-return]
