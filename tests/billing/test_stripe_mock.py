"""The real ``stripe-mock`` (built by scripts/build-peers.sh) accepts every v1 request the sender makes.

stripe-mock validates each request against Stripe's OpenAPI spec. Missing binary: the test FAILS.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from otel_chronograph._config import MeterConfig
from otel_chronograph.billing import Outbox, Sender, StripeTransport, UsageRecord
from otel_chronograph.billing._outbox import OutboxRow, now_ms

ROOT = Path(__file__).resolve().parents[2]
BINARY = ROOT / ".peers" / "bin" / "stripe-mock"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def stripe_mock() -> Iterator[str]:
    if not BINARY.exists():
        pytest.fail(f"stripe-mock is missing at {BINARY}: run scripts/build-peers.sh (it builds "
                    "github.com/stripe/stripe-mock@v0.203.0 with Go)", pytrace=False)
    port = _free_port()
    proc = subprocess.Popen([str(BINARY), "-http-addr", f"127.0.0.1:{port}"], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode() if proc.stdout else ""
                proc.kill()
                pytest.fail(f"stripe-mock did not start on port {port}: {out}", pytrace=False)
            time.sleep(0.05)  # waiting for a child process to listen, bounded by the deadline
    yield url
    proc.terminate()
    proc.wait(10)


def meter(url: str, tmp_path: Path, value: str = "cost_micros") -> MeterConfig:
    return MeterConfig.model_validate({"outbox": str(tmp_path / "o.db"), "api_base": url,
                                       "event_name": "faf_usage", "value": value, "request_timeout_s": 5,
                                       "max_attempts": 1})


def test_stripe_mock_validates_requests(stripe_mock: str) -> None:
    # proves the schema check is on: a request without the required payload is refused
    req = urllib.request.Request(f"{stripe_mock}/v1/billing/meter_events", data=b"event_name=faf_usage",
                                 headers={"Authorization": "Bearer sk_test_123"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=5)
    assert exc.value.code == 400


@pytest.mark.parametrize(("payload_keys", "value"), [
    (("stripe_customer_id", "value"), 1000), (("customer", "units"), 1),
    (("stripe_customer_id", "value"), 0)])
def test_every_v1_request_of_the_sender_is_accepted(stripe_mock: str, tmp_path: Path,
                                                    payload_keys: tuple[str, str], value: int) -> None:
    m = MeterConfig.model_validate({"outbox": str(tmp_path / "o.db"), "api_base": stripe_mock,
                                    "customer_payload_key": payload_keys[0],
                                    "value_payload_key": payload_keys[1],
                                    "request_timeout_s": 5})
    t = StripeTransport("sk_test_123", m)
    out = t.send_v1(OutboxRow("req_7f8a9b0c1d2e3f40", "faf_usage", "cus_123", value, now_ms(), 0))
    assert out.kind == "delivered", out.error


def test_sender_drains_an_outbox_into_stripe_mock(stripe_mock: str, tmp_path: Path) -> None:
    m = meter(stripe_mock, tmp_path)
    box = Outbox(m.outbox)
    for i in range(20):
        box.add(UsageRecord(f"req_{i:016x}", "faf_usage", f"cus_{i % 3}", 1000 + i, now_ms() - i * 60_000,
                            "faf score", "pro", Decimal("0.001"), 10.0, None))
    sender = Sender(box, m, StripeTransport("sk_test_123", m))
    assert sender.drain(30)
    st = box.status()
    assert (st.delivered, st.dead, st.pending) == (20, 0, 0), st
    assert sender.counters.retried == 0
    sender.shutdown(1)
