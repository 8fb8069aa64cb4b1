"""Running a command on a real pseudo-terminal (and piped), and checking that what reached the terminal
cannot drive it: hostile span names, commands and event text must be shown, never interpreted."""

from __future__ import annotations

import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
from collections.abc import Mapping, Sequence

# What an attacker who controls a span name, command, sector, event name or attribute would send.
HOSTILE: tuple[str, ...] = (
    "title\x1b]0;pwned\x07",                                     # OSC: window title
    "clear\x1b[2J\x1b[H",                                         # CSI: clear screen, cursor home
    "link\x1b]8;;https://evil.example/\x1b\\click\x1b]8;;\x1b\\",  # OSC 8 hyperlink
    "c1\x9b31mred",                                               # C1 CSI
    "bell\x07back\x08cr\r",
    "[/]",                                                        # Rich markup: closes nothing
    "[link=https://evil.example/]x[/link]",
    "[bold]loud",
    "cmd\nLAP TIME: 0.1ms GREEN",                                 # a forged row
    "bidi\u202etxt.exe",                                          # right-to-left override
)

# The renderers' own colours: SGR sequences only (ESC [ params m).
_SGR = re.compile(r"\x1b\[[0-9;]*m")
_UNSAFE = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def unsafe_characters(output: str) -> list[str]:
    """Control characters left in ``output`` once the renderer's own SGR colours are removed."""
    return _UNSAFE.findall(_SGR.sub("", output.replace("\r\n", "\n")))


def _controlling_tty() -> None:  # in the child, after setsid(): the pty on fd 0 becomes its terminal
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def run_in_pty(argv: Sequence[str], env: Mapping[str, str], timeout_s: float = 60.0,
               columns: int = 160, answer: tuple[bytes, bytes] | None = None) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on a fresh pseudo-terminal; everything it wrote.

    ``answer=(prompt, keys)``: the pty is the command's controlling terminal (so keys such as Ctrl-C send
    signals), and ``keys`` are typed once the output contains ``prompt``."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    proc = subprocess.Popen(list(argv), stdin=slave, stdout=slave, stderr=slave, env=dict(env),
                            start_new_session=True, preexec_fn=_controlling_tty if answer else None)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                proc.kill()
                raise AssertionError(f"{argv[:3]} did not finish within {timeout_s}s: {b''.join(chunks)!r}")
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
            if answer is not None and answer[0] in b"".join(chunks):
                os.write(master, answer[1])
                answer = None
        code = proc.wait(timeout_s)
    finally:
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def terminal_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CHRONOGRAPH_CONFIG", "COLUMNS")}
    env.update(TERM="xterm-256color", **extra)
    return env
