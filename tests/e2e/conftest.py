"""Fixtures for the end-to-end tests against real peers (see tests/e2e/peers.py).

The peers are built by ``scripts/build-peers.sh``. A missing binary makes the tests FAIL with a
message that says so; they are never skipped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "e2e: end-to-end tests against real peers (Collector, Jaeger, Prometheus, stripe-mock)"
    )


def _binary(find: Callable[[], Path]) -> Path:
    """The peer's binary, or a test FAILURE (never a skip) naming the build script."""
    try:
        return find()
    except peers.PeerError as e:
        pytest.fail(str(e), pytrace=False)


@pytest.fixture(scope="session")
def collector_bin() -> Path:
    return _binary(peers.collector_binary)


@pytest.fixture(scope="session")
def jaeger_bin() -> Path:
    return _binary(peers.jaeger_binary)


@pytest.fixture(scope="session")
def prometheus_bin() -> Path:
    return _binary(peers.prometheus_binary)


@pytest.fixture(scope="session")
def stripe_mock_bin() -> Path:
    return _binary(peers.stripe_mock_binary)


@pytest.fixture()
def peer_stack(
    tmp_path_factory: pytest.TempPathFactory, collector_bin: Path, jaeger_bin: Path, prometheus_bin: Path
) -> Iterator[peers.PeerStack]:
    """Jaeger + Collector(collector-config/gateway.yaml) + Prometheus (1s scrape) on free ports."""
    stack = peers.PeerStack(tmp_path_factory.mktemp("peers"))
    try:
        stack.start()
    except (peers.PeerError, TimeoutError) as e:
        stack.stop()
        pytest.fail(f"could not start the peer stack: {e}", pytrace=False)
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture()
def stripe_mock(
    tmp_path_factory: pytest.TempPathFactory, stripe_mock_bin: Path
) -> Iterator[peers.StripeMock]:
    peer = peers.start_stripe_mock(tmp_path_factory.mktemp("stripe-mock"))
    try:
        yield peer
    finally:
        peer.stop()
