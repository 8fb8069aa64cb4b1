"""Exec benchmark: what ``chronograph exec`` adds to a command, and what an ``exec-server`` sustains.

    .venv/bin/python benchmarks/bench_exec.py [--runs 20] [--requests 200] [--clients 8] [--reps 3]

1. Overhead of ``chronograph exec -- true`` over running ``true`` directly (fork/exec from this process):
   ``--runs`` alternating pairs, median ms per run of each and the median difference. Also
   ``chronograph --version`` (interpreter + CLI start-up, the floor any Python CLI pays) so the share
   that is exec's own work (SDK, receiver, lap, display) is visible. Nothing exported (no OTEL_* set).
2. exec-server throughput for a trivial command (``true``): ``--requests`` requests from ``--clients``
   concurrent keep-alive clients (pro tier, concurrency = clients, no rate limit in the way), runs/s;
   baseline in the same run: the same number of ``true`` spawned by asyncio in this process at the same
   concurrency (what any server that forks pays). Median of ``--reps`` alternating repetitions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent
CHRONOGRAPH = str(BIN / "chronograph")
KEY = "bench-key-00000000000000"


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "CHRONOGRAPH_"))}
    env["NO_COLOR"] = "1"
    return env


def timed(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return (time.perf_counter() - t0) * 1000


def bench_overhead(runs: int) -> None:
    env = clean_env()
    direct, wrapped, floor = [], [], []
    timed([CHRONOGRAPH, "exec", "--", "true"], env)  # warm the page cache once
    for _ in range(runs):
        direct.append(timed(["true"], env))
        wrapped.append(timed([CHRONOGRAPH, "exec", "--", "true"], env))
        floor.append(timed([CHRONOGRAPH, "--version"], env))
    diff = [w - d for w, d in zip(wrapped, direct, strict=True)]
    print(f"exec overhead ({runs} alternating runs, median ms per run)")
    print(f"  true directly              {statistics.median(direct):8.1f} ms")
    print(f"  chronograph exec -- true   {statistics.median(wrapped):8.1f} ms")
    print(f"  overhead                   {statistics.median(diff):8.1f} ms")
    print(f"  of which CLI start-up      {statistics.median(floor):8.1f} ms  (chronograph --version)")


async def _server_runs(url: str, requests: int, clients: int) -> float:
    import httpx

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(requests):
        queue.put_nowait(i)
    codes: list[int] = []
    async with httpx.AsyncClient(timeout=120, limits=httpx.Limits(max_connections=clients)) as client:
        async def worker() -> None:
            while not queue.empty():
                queue.get_nowait()
                r = await client.post(url + "/api/v1/exec?format=v1", json={"command": "true"},
                                      headers={"Authorization": f"Bearer {KEY}"})
                codes.append(r.status_code)

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - t0
    assert codes.count(200) == requests, {c: codes.count(c) for c in set(codes)}
    return requests / elapsed


async def _raw_spawns(requests: int, clients: int) -> float:
    semaphore = asyncio.Semaphore(clients)

    async def one() -> None:
        async with semaphore:
            pipe = asyncio.subprocess.PIPE
            proc = await asyncio.create_subprocess_exec("true", stdout=pipe, stderr=pipe,
                                                        start_new_session=True)
            await proc.communicate()

    t0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(requests)))
    return requests / (time.perf_counter() - t0)


def bench_server(requests: int, clients: int, reps: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "exec.yaml"
        cfg.write_text(json.dumps({"chronograph": {"exec": {
            "commands": {"true": {"argv": ["true"], "tiers": ["pro"]}},
            "tiers": {"pro": {"timeout_s": 30, "output_cap_bytes": 65536, "concurrency": clients,
                              "rate_per_minute": 10_000_000}}}}}))
        keys = Path(tmp) / "keys.json"
        keys.write_text(json.dumps({KEY: {"customer": "cus_bench", "tier": "pro"}}))
        env = {**clean_env(), "CHRONOGRAPH_EXEC_KEYS": str(keys)}
        proc = subprocess.Popen([CHRONOGRAPH, "exec-server", "--config", str(cfg), "--port", "0"], env=env,
                                stderr=subprocess.PIPE, text=True)
        assert proc.stderr is not None
        found = None
        while found is None:
            line = proc.stderr.readline()
            if not line:
                raise SystemExit(f"exec-server did not start: {proc.wait()}")
            found = re.search(r"on (http://\S+)", line)
        url = found.group(1)
        try:
            asyncio.run(_server_runs(url, 20, clients))  # warm-up
            server, raw = [], []
            for _ in range(reps):
                server.append(asyncio.run(_server_runs(url, requests, clients)))
                raw.append(asyncio.run(_raw_spawns(requests, clients)))
        finally:
            proc.terminate()
            proc.wait(30)
    s, r = statistics.median(server), statistics.median(raw)
    print(f"exec-server throughput ({requests} requests, {clients} clients, median of {reps})")
    print(f"  exec-server runs/s         {s:8.1f}")
    print(f"  raw asyncio spawns/s       {r:8.1f}  (baseline: fork/exec of true, no HTTP, no lap)")
    print(f"  ratio                      {s / r:8.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print(f"cpus {os.cpu_count()}, load {os.getloadavg()[0]:.1f}")
    bench_overhead(args.runs)
    bench_server(args.requests, args.clients, args.reps)


if __name__ == "__main__":
    main()
