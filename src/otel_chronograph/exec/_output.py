"""Bounded capture of a command's output: head and tail kept, size and sha256 of the whole.

Memory stays at the cap whatever the command writes (the middle is hashed and counted, then dropped),
so a run that prints gigabytes cannot exhaust the server; the client still learns exactly how much was
written and can verify a copy by its hash.
"""

from __future__ import annotations

import hashlib
from collections import deque

__all__ = ["CappedOutput"]


class CappedOutput:
    """Feed chunks; ``text()`` is the whole output when it fits in ``cap`` bytes, else the first
    ``cap // 2`` and last ``cap - cap // 2`` bytes around a marker naming how much was cut."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._head_cap = cap // 2
        self._tail_cap = cap - self._head_cap
        self._head = bytearray()
        self._tail: deque[bytes] = deque()
        self._tail_len = 0
        self._sha = hashlib.sha256()
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        self._sha.update(chunk)
        self.size += len(chunk)
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += chunk[:room]
            chunk = chunk[room:]
        if not chunk:
            return
        self._tail.append(chunk)
        self._tail_len += len(chunk)
        while self._tail_len - len(self._tail[0]) >= self._tail_cap:
            self._tail_len -= len(self._tail.popleft())

    @property
    def truncated(self) -> bool:
        return self.size > self.cap

    @property
    def sha256(self) -> str:
        return self._sha.hexdigest()

    def kept(self) -> tuple[bytes, bytes]:
        """(head, tail) bytes; the tail is empty when nothing was cut."""
        tail = b"".join(self._tail)
        if not self.truncated:
            return bytes(self._head) + tail, b""
        return bytes(self._head), tail[-self._tail_cap:]

    def text(self) -> str:
        """UTF-8 text (undecodable bytes replaced); sizes and the hash are of the raw bytes."""
        head, tail = self.kept()
        if not self.truncated:
            return head.decode("utf-8", "replace")
        cut = self.size - len(head) - len(tail)
        marker = (f"\n[... chronograph: {cut} of {self.size} bytes cut here; "
                  f"sha256 of the whole {self.sha256} ...]\n")
        return head.decode("utf-8", "replace") + marker + tail.decode("utf-8", "replace")
