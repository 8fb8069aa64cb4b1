"""One server run of a named command: never a shell, bounded in time, output and processes.

The argv goes to the kernel as a list (``create_subprocess_exec``: no shell ever parses an argument), in
a new session with stdin closed. Past the tier's timeout the whole process group gets SIGTERM, then
SIGKILL after ``kill_grace_s``; when the command ends (or the request is cancelled) whatever it left
behind is killed too (:mod:`._reap`), so no child or grandchild outlives its run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from ._output import CappedOutput
from ._reap import MARKER, living, new_marker, signal_run, started_at
from ._signals import signal_name

__all__ = ["Run"]

_CHUNK = 65_536
_DRAIN_S = 1.0  # after every process of the run is killed, the pipes close at once; this is a bound


async def _pump(stream: asyncio.StreamReader | None, out: CappedOutput) -> None:
    if stream is None:
        return
    while chunk := await stream.read(_CHUNK):
        out.feed(chunk)


async def _until_dead(pids: list[int], timeout_s: float) -> None:
    """The answer says the run is over: wait (bounded) until the killed processes have really died."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while living(pids) and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.002)  # no notification for a non-child's death: a short bounded poll


def _exit_of(proc: asyncio.subprocess.Process) -> asyncio.Future[None]:
    """Done when the process itself has exited. ``proc.wait()`` also waits for its pipes to close, which a
    background grandchild holding them keeps open until the timeout; a pidfd (Linux 5.3+) says at once."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def fire() -> None:
        if not done.done():
            done.set_result(None)

    try:
        fd = os.pidfd_open(proc.pid)
    except ProcessLookupError:  # exited and reaped already
        fire()
        return done
    except (AttributeError, OSError):  # no pidfd here: the pipes' end it is
        asyncio.ensure_future(proc.wait()).add_done_callback(lambda _: fire())
        return done
    loop.add_reader(fd, fire)

    def close(_: object) -> None:
        loop.remove_reader(fd)
        os.close(fd)

    done.add_done_callback(close)
    return done


class Run:
    def __init__(self, output_cap: int, timeout_s: float, grace_s: float) -> None:
        self.stdout = CappedOutput(output_cap)
        self.stderr = CappedOutput(output_cap)
        self.timeout_s = timeout_s
        self.grace_s = grace_s
        self.marker = new_marker()
        self.timed_out = False
        self.escaped = 0
        self.returncode: int | None = None
        self.spawn_error: tuple[int, str] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._since = 0  # the command's start (clock ticks): its descendants started at or after it

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        return {**base, MARKER: self.marker}

    async def start(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        """Spawn; a program that cannot start is reported as a shell would (127, 126), not raised."""
        try:
            self._proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE, env=dict(env), start_new_session=True)
        except FileNotFoundError:
            self.spawn_error = (127, f"{argv[0]}: command not found\n")
        except OSError as exc:
            self.spawn_error = (126, f"{argv[0]}: {exc.strerror or exc}\n")
        if self.spawn_error is not None:
            self.returncode = self.spawn_error[0]
            self.stderr.feed(self.spawn_error[1].encode())
        else:
            assert self._proc is not None
            self._since = started_at(self._proc.pid)

    async def wait(self) -> None:
        """Until the command ends or its timeout; then nothing of the run is left alive."""
        proc = self._proc
        if proc is None:
            return
        readers = [asyncio.ensure_future(_pump(proc.stdout, self.stdout)),
                   asyncio.ensure_future(_pump(proc.stderr, self.stderr))]
        exited = _exit_of(proc)
        try:
            try:
                await asyncio.wait_for(asyncio.shield(exited), self.timeout_s)
            except asyncio.TimeoutError:
                self.timed_out = True
                signal_run(proc.pid, self.marker, signal.SIGTERM, self._since)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(asyncio.shield(exited), self.grace_s)
        finally:
            # Always, also when the request is cancelled: the group and any escaped descendant. Only then
            # do the pipes close (a background grandchild holds them open).
            exited.cancel()
            doomed, self.escaped = signal_run(proc.pid, self.marker, signal.SIGKILL, self._since)
            await _until_dead(doomed, _DRAIN_S)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), _DRAIN_S)
            self.returncode = proc.returncode
            _, pending = await asyncio.wait(readers, timeout=_DRAIN_S)
            for task in pending:
                task.cancel()

    @property
    def exit_code(self) -> int | None:
        rc = self.returncode
        return rc if rc is not None and rc >= 0 else None

    @property
    def signal_number(self) -> int | None:
        rc = self.returncode
        return -rc if rc is not None and rc < 0 else None

    def data(self) -> dict[str, Any]:
        """The response's ``data`` (SPEC.md: exit_code, signal, timed_out, outputs, sizes, hashes)."""
        signo = self.signal_number
        return {
            "exit_code": self.exit_code,
            "signal": signal_name(signo) if signo is not None else None,
            "timed_out": self.timed_out,
            "stdout": self.stdout.text(),
            "stderr": self.stderr.text(),
            "stdout_bytes": self.stdout.size,
            "stderr_bytes": self.stderr.size,
            "stdout_sha256": self.stdout.sha256,
            "stderr_sha256": self.stderr.sha256,
            "truncated": self.stdout.truncated or self.stderr.truncated,
        }
