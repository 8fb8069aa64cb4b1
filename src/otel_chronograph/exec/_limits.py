"""Admission of ``exec-server`` runs: per-key concurrency and rate (values per tier), and a server-wide
cap on runs at once. A refusal says when to retry; nothing queues (a queue would only hide overload).

The rate is a token bucket per key holding up to one minute's quota (``rate_per_minute``), refilled
continuously, so a key may burst its minute's worth and then runs at the steady rate.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from .._config import ExecTier

__all__ = ["Limits", "Refusal"]


@dataclass(frozen=True)
class Refusal:
    reason: str
    retry_after_s: int


@dataclass
class _Key:
    tokens: float
    updated: float
    running: int = 0


class Limits:
    def __init__(self, tiers: Mapping[str, ExecTier], max_running: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._tiers = tiers
        self._max_running = max_running
        self._clock = clock
        self._keys: dict[str, _Key] = {}
        self._lock = threading.Lock()
        self.running = 0
        self.refused = 0

    def acquire(self, key_id: str, tier: str) -> Refusal | None:
        """Admit a run (then :meth:`release` it) or say why not and when to retry."""
        limits = self._tiers[tier]
        per_s = limits.rate_per_minute / 60.0
        now = self._clock()
        with self._lock:
            state = self._keys.get(key_id)
            if state is None:
                state = self._keys[key_id] = _Key(limits.rate_per_minute, now)
            state.tokens = min(limits.rate_per_minute, state.tokens + (now - state.updated) * per_s)
            state.updated = now
            refusal = None
            if state.running >= limits.concurrency:
                refusal = Refusal(f"more than {limits.concurrency} runs at once for this key "
                                  f"({tier} tier)", 1)
            elif state.tokens < 1.0:
                wait = math.ceil((1.0 - state.tokens) / per_s)
                refusal = Refusal(f"more than {limits.rate_per_minute:g} runs per minute for this key "
                                  f"({tier} tier)", max(1, wait))
            elif self.running >= self._max_running:
                refusal = Refusal(f"the server runs {self._max_running} commands already", 1)
            if refusal is not None:
                self.refused += 1
                return refusal
            state.tokens -= 1.0
            state.running += 1
            self.running += 1
            return None

    def release(self, key_id: str) -> None:
        with self._lock:
            self._keys[key_id].running -= 1
            self.running -= 1
