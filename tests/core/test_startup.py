"""Issue 10: `import otel_chronograph` plus `install()` with billing off never imports stripe (nor the
server or TUI stacks): measured in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import otel_chronograph as c
from opentelemetry.sdk.trace import TracerProvider
c.install(TracerProvider(), config={"billing": {"enabled": False}})
print(" ".join(m for m in ("stripe", "starlette", "uvicorn", "textual", "duckdb") if m in sys.modules))
"""


def test_install_with_billing_off_imports_no_heavy_optional_module() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "", out.stdout
