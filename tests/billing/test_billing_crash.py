"""Crash test: SIGKILL a lap-emitting child at random moments with faults injected all along.

At the end the fake Stripe holds every request id the application saw complete, each exactly once.
Ids the server holds beyond those are laps whose outbox row was committed but whose child was killed
before it could write the id down (at most one per thread per kill), and they must be real outbox rows.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from billing_support import API_KEY, billing_config
from fake_stripe import FakeStripe

from otel_chronograph.billing import Outbox

CHILD = Path(__file__).with_name("crash_child.py")
THREADS = 2


def _lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    data = path.read_text()
    return [x for x in data.split("\n")[:-1] if x]  # a torn last line (no newline) is not complete


def _spawn(cfg: Path, completed: Path, n: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "STRIPE_API_KEY": API_KEY}
    return subprocess.Popen([sys.executable, str(CHILD), str(cfg), str(completed), str(n), str(THREADS)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_lines(path: Path, at_least: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(_lines(path)) < at_least:
        if proc.poll() is not None:
            raise AssertionError(f"child exited early: {proc.stderr.read().decode() if proc.stderr else ''}")
        assert time.monotonic() < deadline, f"child did not reach {at_least} laps in {timeout}s"
        time.sleep(0.02)  # polling a file written by another process, bounded by the deadline


def test_sigkill_restart_with_faults_bills_each_completed_lap_exactly_once(tmp_path: Path) -> None:
    rng = random.Random(1234)
    completed = tmp_path / "completed.txt"
    cfg_path = tmp_path / "config.json"
    outbox = tmp_path / "outbox.db"
    with FakeStripe(customers=[f"cus_{i}" for i in range(7)], hold_s=0.6, seed=7) as fake:
        cfg = billing_config(outbox, fake.url, batch_size=20, flush_interval_s=0.05, request_timeout_s=0.3,
                             retry_base_s=0.02, retry_max_s=0.3, lease_s=1.0, shutdown_timeout_s=8,
                             max_attempts=1000)
        cfg_path.write_text(json.dumps(cfg))
        fake.set_fault_rate(0.15)
        kills = 0
        for _ in range(5):
            proc = _spawn(cfg_path, completed, 100_000)
            try:
                _wait_lines(completed, len(_lines(completed)) + rng.randint(150, 600), proc, timeout=30)
            finally:
                proc.send_signal(signal.SIGKILL)
                proc.wait(10)
            kills += 1
        # a last run that ends normally: its shutdown flush is bounded and leaves the rest for the next start
        proc = _spawn(cfg_path, completed, 400)
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
        # faults stop; a fresh sender (next start) drains what is left, including expired leases
        fake.clear_faults()
        env = {**os.environ, "STRIPE_API_KEY": API_KEY}
        cli = [sys.executable, "-c", "from otel_chronograph._cli import main; main()"]
        flushed = subprocess.run([*cli, "billing", "flush", "--config", str(cfg_path), "--timeout", "30"],
                                 env=env, capture_output=True, text=True, timeout=60)
        assert flushed.returncode == 0, flushed.stdout + flushed.stderr

        done = _lines(completed)
        assert len(done) >= 1500, f"only {len(done)} laps completed"
        assert len(done) == len(set(done)), "the child saw a request id twice"
        box = Outbox(outbox)
        st = box.status()
        assert st.pending == 0 and st.dead == 0, st
        accepted = fake.accepted_ids()
        missing = set(done) - accepted
        assert not missing, f"{len(missing)} completed laps never reached Stripe, e.g. {sorted(missing)[:3]}"
        extra = accepted - set(done)
        assert extra <= box.identifiers(), "the server holds ids that are not laps"
        assert len(extra) <= kills * THREADS, f"{len(extra)} unexplained extra events"
        with fake.lock:
            assert len(fake.state.accepted_order) == len(set(fake.state.accepted_order)), "billed twice"
            assert not fake.state.rejected, fake.state.rejected
            faults = sum(fake.state.faults_served.values())
            retried_ids = sum(1 for n in fake.state.attempts.values() if n > 1)
        assert faults > 50, f"too few faults injected ({faults}) for the test to mean anything"
        assert retried_ids > 0
        assert box.identifiers("delivered") == accepted
