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

__all__ = ["MARKER", "living", "new_marker", "signal_run", "started_at"]

MARKER = "CHRONOGRAPH_EXEC_RUN"
_ENVIRON_LIMIT = 1 << 20  # an environment is a few KiB; the marker may be anywhere in it


def new_marker() -> str:
    return secrets.token_hex(12)


def _state(pid: str) -> tuple[bytes, int, int] | None:
    """(state letter, process group, start time in clock ticks since boot) from ``/proc/<pid>/stat``;
    None when gone."""
    try:
        fields = _read(f"/proc/{pid}/stat", 2048).rsplit(b")", 1)[1].split()
        return fields[0], int(fields[2]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _read(path: str, first: int, limit: int = 0) -> bytes:
    """A small /proc file: ``first`` bytes, then more up to ``limit`` (raw descriptors, no buffered file
    object: a scan reads one or two files per process)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, first)
        while len(data) < limit and (more := os.read(fd, 65536)):
            data += more
        return data
    finally:
        os.close(fd)


def started_at(pid: int) -> int:
    """When ``pid`` started (clock ticks since boot); 0 when unknown (then every process is examined)."""
    found = _state(str(pid))
    return found[2] if found is not None else 0


def _members(pgid: int, token: str, since: int) -> tuple[list[int], list[int]]:
    """(pids in the run's process group, pids outside it carrying its marker), scanned *before* any signal
    (a process with SIGKILL pending may already hide its environment). Only processes started at or after
    ``since`` (the command's start: its descendants) have their environment read, the costly part."""
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
        if found[2] < since:
            continue
        try:
            data = _read(f"/proc/{name}/environ", 16384, _ENVIRON_LIMIT)
        except OSError:  # gone, or another user's
            continue
        if needle in data.split(b"\0"):
            escaped.append(int(name))
    return in_group, escaped


def signal_run(pgid: int, token: str, signo: int = signal.SIGKILL, since: int = 0
               ) -> tuple[list[int], int]:
    """Send ``signo`` to the run's process group and to every process outside it carrying the run's
    marker (started at or after ``since``): (every pid signalled, how many had left the group)."""
    in_group, escaped = _members(pgid, token, since)
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
