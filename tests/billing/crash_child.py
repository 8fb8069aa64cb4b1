"""Child process of the crash test: emits laps with billing on; records each completed request id.

Usage: python crash_child.py CONFIG_JSON COMPLETED_FILE N_LAPS THREADS
A request id is appended (and fsync'd) only after ``lap.telemetry`` is available, i.e. after the outbox
row was committed. The parent kills this process with SIGKILL at random moments.
"""

from __future__ import annotations

import json
import os
import sys
import threading

from opentelemetry.sdk.trace import TracerProvider

import otel_chronograph as chrono


def main() -> None:
    with open(sys.argv[1]) as f:
        config = json.load(f)
    completed = sys.argv[2]
    n, threads = int(sys.argv[3]), int(sys.argv[4])
    provider = TracerProvider()
    processor = chrono.install(provider, config=config)
    fd = os.open(completed, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    lock = threading.Lock()

    def work(t: int) -> None:
        for i in range(n // threads):
            customer = f"cus_{(i * threads + t) % 7}"
            with chrono.lap("faf score", tier="pro", customer=customer, tracer_provider=provider) as lap:
                with chrono.sector("init", tracer_provider=provider):
                    pass
                with chrono.sector("exec", tracer_provider=provider):
                    pass
            line = (lap.telemetry.request_id + "\n").encode()
            with lock:
                os.write(fd, line)
                os.fsync(fd)

    ts = [threading.Thread(target=work, args=(t,)) for t in range(threads)]
    for th in ts:
        th.start()
    print("started", flush=True)
    for th in ts:
        th.join()
    processor.shutdown()
    os.close(fd)
    print("done", flush=True)


if __name__ == "__main__":
    main()
