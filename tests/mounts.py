"""Real small or read-only filesystems for tests (root ignores file modes, not mount flags; CI is root)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def tmpfs(target: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``target`` (created) with ``options`` (e.g. ``size=3m`` or ``ro,size=1m``)."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)
