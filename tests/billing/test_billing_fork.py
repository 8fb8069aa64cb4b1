"""Fork safety of billing: in a child forked after the parent billed a lap (its sender thread running),
the child's first lap restarts a sender thread of the child's own, with its own lease owner; the
child's rows are committed (the outbox is shared) and delivered, with no flush call."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

from fake_stripe import FakeStripe
from opentelemetry.sdk.trace import TracerProvider

import otel_chronograph as chrono
from otel_chronograph.billing import BillingSink


def laps(provider: TracerProvider, prefix: str, n: int) -> None:
    for i in range(n):
        with chrono.lap("faf score", customer=f"cus_{i % 5}", tier="pro", tracer_provider=provider,
                        run=f"{prefix}{i}"):
            pass


def test_a_forked_child_restarts_its_own_sender(make_config: Callable[..., dict[str, Any]],
                                               fake: FakeStripe) -> None:
    provider = TracerProvider()
    processor = chrono.install(provider, config=make_config(batch_size=5, flush_interval_s=0.2))
    sink = next(s for s in processor.sinks if isinstance(s, BillingSink))
    laps(provider, "parent", 3)
    assert fake.wait_for(lambda st: len(st.accepted) == 3)
    assert sink.sender is not None and sink.sender._worker.alive()
    parent_owner = sink.sender.owner
    pid = os.fork()
    if pid == 0:  # the child: never flush; exit without atexit hooks
        code = 1
        try:
            sender = sink.sender
            started_before = sender._worker.started
            laps(provider, "child", 12)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not (sender._worker.alive()
                                                       and sink.outbox.status().delivered == 15):
                time.sleep(0.02)
            ok = (not started_before and sender._worker.alive() and sender.owner != parent_owner
                  and sink.outbox.status().delivered == 15)
            code = 0 if ok else 3
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert fake.wait_for(lambda st: len(st.accepted) == 15)
    processor.shutdown()
