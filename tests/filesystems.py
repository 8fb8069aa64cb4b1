"""Real small filesystems for disk-full tests (a tmpfs of a few MB; the tests run as root, as CI does)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["fill", "grow", "small_filesystem"]


@contextmanager
def small_filesystem(where: Path, size: str = "3m") -> Iterator[Path]:
    """Mount a tmpfs of ``size`` at ``where`` (created) for the duration of the block."""
    where.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


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
