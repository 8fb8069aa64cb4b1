"""A command on a real pseudo-terminal as its controlling terminal, so terminal keys send signals."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence


def _controlling_tty() -> None:  # runs in the child, after setsid(): the pty on fd 0 becomes its terminal
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def interact(argv: Sequence[str], env: Mapping[str, str], after: bytes, send: bytes,
             timeout_s: float = 60.0) -> tuple[int, str]:
    """Run ``argv`` on a pty; once ``after`` was printed, type ``send``; return (status, output)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, env=dict(env),
                            start_new_session=True, preexec_fn=_controlling_tty)
    os.close(slave)
    seen = b""
    sent = False
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                raise AssertionError(f"no end within {timeout_s}s: {seen!r}")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every process closed the terminal
                break
            if not data:
                break
            seen += data
            if not sent and after in seen:
                os.write(master, send)
                sent = True
        return proc.wait(timeout_s), seen.decode("utf-8", "replace")
    finally:
        os.close(master)
