"""50 concurrent requests against a real exec-server: only 200 or 429 (with Retry-After), never a 5xx, and
the billing outbox holds exactly one row per run that was answered."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import httpx

from .helpers import FREE, PRO, PYTHON, exec_server, write_config, write_keys


async def _burst(url: str, n: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def one(i: int) -> httpx.Response:
            headers = FREE if i % 2 else PRO
            return await client.post(url + "/api/v1/exec", json={"command": "echo", "args": [f"run {i}"]},
                                     headers=headers)

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def test_50_concurrent_requests_no_5xx_and_billing_rows_match_the_runs(tmp_path: Path) -> None:
    outbox = tmp_path / "outbox.db"
    cfg = write_config(tmp_path / "exec.yaml", {
        "commands": {"echo": {"argv": [PYTHON, "-c", "import sys; print(sys.argv[1])", "{text}"],
                              "tiers": ["free", "pro"], "args": {"text": {}}}},
        "tiers": {"free": {"timeout_s": 30, "output_cap_bytes": 4096, "concurrency": 2,
                           "rate_per_minute": 10},
                  "pro": {"timeout_s": 30, "output_cap_bytes": 4096, "concurrency": 4,
                          "rate_per_minute": 600}},
    }, billing={"enabled": True, "rates": {"echo": "0.002"}, "meter": {"outbox": str(outbox)}})
    with exec_server(cfg, write_keys(tmp_path / "keys.json")) as server:
        responses = asyncio.run(_burst(server.url, 50))
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 429}, codes
        assert 200 in codes and 429 in codes  # free may run 2 at once: a burst of 25 must be refused
        for r in responses:
            if r.status_code == 429:
                assert int(r.headers["retry-after"]) >= 1 and r.headers["chronograph-exec-started"] == "false"
        ran = {r.json()["telemetry"]["requestId"]: r for r in responses if r.status_code == 200}
        assert len(ran) == codes.count(200)
        for rid, r in ran.items():
            i = int(r.json()["data"]["stdout"].split()[1])
            assert r.json()["data"]["stdout"] == f"run {i}\n" and rid.startswith("req_")
        assert server.stop() == 0  # graceful: every lap's outbox row committed
    with sqlite3.connect(outbox) as db:
        rows = db.execute("select identifier, customer, tier, cost, command from usage").fetchall()
    assert sorted(r[0] for r in rows) == sorted(ran)
    by_id = {r[0]: r for r in rows}
    for rid, r in ran.items():
        tier = r.json()["telemetry"]["billing"]["tier"]
        assert by_id[rid][1:] == ({"free": "cus_free", "pro": "cus_pro"}[tier], tier,
                                  r.json()["telemetry"]["billing"]["cost"], "echo")
