"""Real small or read-only filesystems for tests (tmpfs: root ignores file modes, not mount flags)."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["fill", "grow", "small_filesystem", "tmpfs"]


@contextmanager
def tmpfs(target: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``target`` (created) with ``options`` (e.g. ``size=3m`` or ``ro,size=1m``)."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True)
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], check=True)


def small_filesystem(where: Path, size: str = "3m") -> contextlib.AbstractContextManager[Path]:
    """A tmpfs of ``size`` at ``where`` for the duration of the block (disk-full tests)."""
    return tmpfs(where, f"size={size}")


def fill(filler: Path, leave_bytes: int) -> None:
    """Fill the filesystem of ``filler`` with that file, then give ``leave_bytes`` back."""
    with filler.open("wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    filler.write_bytes(filler.read_bytes()[:-leave_bytes])


def grow(where: Path, size: str) -> None:
    """Give the tmpfs at ``where`` more room (space is back)."""
    subprocess.run(["mount", "-o", f"remount,size={size}", str(where)], check=True)
