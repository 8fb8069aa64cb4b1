"""Ending a server run completely: its process group, and any descendant that left the group.

Each run starts in a new session (``start_new_session=True``: its own process group) and with a marker
variable in its environment, which every descendant inherits. Killing the group reaches a child and its
ordinary grandchildren; a daemon that called ``setsid()`` leaves the group but keeps the marker, so
``/proc/*/environ`` (Linux) finds it. A program that both leaves its session and clears its environment
escapes this: contain such programs with a container or cgroup.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal

__all__ = ["MARKER", "new_marker", "signal_run"]

MARKER = "CHRONOGRAPH_EXEC_RUN"


def new_marker() -> str:
    return secrets.token_hex(12)


def _marked(token: str) -> list[int]:
    """Pids whose environment carries ``MARKER=token`` (only processes we may read: our own user's)."""
    needle = f"{MARKER}={token}".encode()
    found = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    me = os.getpid()
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                data = f.read()
        except OSError:  # gone, or another user's
            continue
        if needle in data.split(b"\0"):
            found.append(int(name))
    return found


def signal_run(pgid: int, token: str, signo: int = signal.SIGKILL) -> int:
    """Send ``signo`` to the run's process group and to every process carrying its marker; how many
    processes outside the group were found."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signo)
    escaped = 0
    for pid in _marked(token):
        try:
            if os.getpgid(pid) != pgid:
                escaped += 1
            os.kill(pid, signo)
        except (ProcessLookupError, PermissionError):
            pass
    return escaped
