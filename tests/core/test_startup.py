"""Issue 10: `import otel_chronograph` plus `install()` with billing off never imports stripe (nor the
server or TUI stacks, PyYAML when no file is read, the OTLP decoders and file readers): measured in a
fresh interpreter. The time it takes is measured by benchmarks/bench_startup.py."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = """
import sys
import otel_chronograph as c
from opentelemetry.sdk.trace import TracerProvider
c.install(TracerProvider(), config={"billing": {"enabled": False}})
print(" ".join(m for m in ("stripe", "starlette", "uvicorn", "textual", "duckdb", "yaml", "google.protobuf",
                           "otel_chronograph.sources._otlp", "otel_chronograph.sources._files")
               if m in sys.modules))
"""


def test_install_with_billing_off_imports_no_heavy_optional_module() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("CHRONOGRAPH_CONFIG", "OTEL_CONFIG_FILE")}
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60, check=True,
                         env=env)
    assert out.stdout.strip() == "", out.stdout
