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

__all__ = ["MARKER", "living", "new_marker", "signal_run"]

MARKER = "CHRONOGRAPH_EXEC_RUN"


def new_marker() -> str:
    return secrets.token_hex(12)


def _state(pid: str) -> tuple[bytes, int] | None:
    """(state letter, process group) from ``/proc/<pid>/stat``; None when gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        return fields[0], int(fields[2])
    except (OSError, IndexError, ValueError):
        return None


def _members(pgid: int, token: str) -> tuple[list[int], list[int]]:
    """(pids in the run's process group, pids outside it carrying its marker), scanned *before* any signal
    (a process with SIGKILL pending may already hide its environment)."""
    needle = f"{MARKER}={token}".encode()
    in_group: list[int] = []
    escaped: list[int] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return [], []
    me = os.getpid()
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        found = _state(name)
        if found is None or found[0] in (b"Z", b"X"):
            continue
        if found[1] == pgid:
            in_group.append(int(name))
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                data = f.read()
        except OSError:  # gone, or another user's
            continue
        if needle in data.split(b"\0"):
            escaped.append(int(name))
    return in_group, escaped


def signal_run(pgid: int, token: str, signo: int = signal.SIGKILL) -> tuple[list[int], int]:
    """Send ``signo`` to the run's process group and to every process outside it carrying the run's
    marker: (every pid signalled, how many had left the group)."""
    in_group, escaped = _members(pgid, token)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signo)
    for pid in escaped:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signo)
    return in_group + escaped, len(escaped)


def living(pids: list[int]) -> list[int]:
    """Those of ``pids`` still running: a SIGKILLed process runs on until it is scheduled to die; a
    zombie (dead, not yet reaped by its new parent) does not count."""
    out = []
    for pid in pids:
        found = _state(str(pid))
        if found is not None and found[0] not in (b"Z", b"X"):
            out.append(pid)
    return out
