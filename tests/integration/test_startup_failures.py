"""Issue 9 item 1: under `opentelemetry-instrument`, a configuration that cannot be read or a stage that
cannot start stops start-up (exit 2, one line), instead of running with no tracing at all."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import otel_chronograph as chrono
from otel_chronograph import ConfigError
from tests.mounts import tmpfs

BIN = Path(sys.executable).parent


def run_instrumented(cfg: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OTEL_PYTHON_DISTRO": "chronograph", "OTEL_PYTHON_CONFIGURATOR": "chronograph",
           "CHRONOGRAPH_CONFIG": str(cfg)}
    return subprocess.run(
        [str(BIN / "opentelemetry-instrument"), "--traces_exporter", "console", "--metrics_exporter", "none",
         sys.executable, "-c", "print('app ran')"], env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def read_only_dir(tmp_path: Path) -> Iterator[Path]:
    """A real read-only filesystem (a tmpfs mounted ro): root ignores file modes, not mount flags."""
    with tmpfs(tmp_path / "ro", "ro,size=1m") as target:
        yield target


@pytest.mark.parametrize(("content", "says"), [
    (b"chronograph:\n  enabled: true\n  # caf\xe9\n", "UTF-8"),
    (b"chronograph: " + b"[" * 200_000 + b"]" * 200_000 + b"\n", "nested"),  # was a segfault in libyaml
    (b"chronograph:\n  laps: {max_pending_traces: 0000-01-01}\n", "year 0"),  # was a ValueError
], ids=["non-utf8", "deep", "unbuildable-scalar"])
def test_unreadable_config_stops_start_up(tmp_path: Path, content: bytes, says: str) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_bytes(content)
    out = run_instrumented(cfg)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "app ran" not in out.stdout and "Traceback" not in out.stderr
    assert str(cfg) in out.stderr and says in out.stderr
    assert len(out.stderr.strip().splitlines()) <= 2


@pytest.mark.parametrize("key", ["billing", "recorder"])
def test_stage_on_a_read_only_path_stops_start_up(tmp_path: Path, read_only_dir: Path, key: str) -> None:
    path = read_only_dir / "store.db"
    cfg = tmp_path / "c.yaml"
    if key == "billing":
        cfg.write_text(f"chronograph:\n  billing:\n    enabled: true\n    meter: {{outbox: {path}, "
                       "delivery: external}\n")
    else:
        cfg.write_text(f"chronograph:\n  recorder: {{persistent: true, path: {path}}}\n")
    out = run_instrumented(cfg)
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "app ran" not in out.stdout and "Traceback" not in out.stderr
    assert key in out.stderr and str(path) in out.stderr
    with pytest.raises(ConfigError, match=key):
        chrono.install(__import__("opentelemetry.sdk.trace", fromlist=["TracerProvider"]).TracerProvider(),
                       config=cfg)
