"""Live assembly (the in-process completion policy): group the spans of each lap as they start and
end, and say when a lap is complete.

Only a source that sees spans start (the SDK processor) can use this policy; sources that only see
ended spans (OTLP, files) use :mod:`._traces` (time-based ``decision_wait``) instead.

A lap is complete when its root has ended and every span started under it has ended, or, with a grace
period, when that period after the root's end has passed. Memory is bounded: at most
``max_pending`` laps wait (the oldest unfinished one is evicted, counted, never silently), and at most
``max_spans`` spans are kept per lap (the rest are counted as dropped and the lap marked truncated).

What it keeps of an ended span is up to the source (:meth:`Assembler.end_item`): the SDK processor keeps
the SDK's own span and makes its record only when the lap completes, outside the lock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from opentelemetry.trace import SpanKind

from ._counters import CompletionStats
from ._records import SpanRecord

__all__ = ["Assembler", "Completed", "PendingLap"]

_LAP_KINDS = (SpanKind.SERVER, SpanKind.CONSUMER)
_LAP_ATTR = "chronograph.lap"

_NOT_EVICTED = object()
_NOT_HELD: tuple[bool, Sequence[Any]] = (False, ())  # shared: no allocation per ended span
_HELD: tuple[bool, Sequence[Any]] = (True, ())

S = TypeVar("S")  # what is kept of an ended span: a SpanRecord, or a source's own span object

LapDecider = Callable[[str, SpanKind, Mapping[str, Any], Mapping[str, Any]], tuple[bool, str | None]]


class PendingLap:
    """A lap waiting for its spans. A plain class, not a dataclass: one is made per lap, and the
    generated ``__init__`` with three default factories cost twice as much; ``dropped_ids`` is made
    only for a lap that drops a span."""

    __slots__ = ("command", "context", "deadline_ns", "done", "dropped", "dropped_ids", "open_ids", "parent",
                 "root", "root_id", "spans")

    def __init__(self, root_id: int, command: str | None, parent: PendingLap | None) -> None:
        self.root_id = root_id
        self.command = command
        self.parent = parent
        self.open_ids: set[int] = set()
        self.dropped_ids: set[int] | None = None
        self.spans: list[Any] = []  # what end_item was given
        self.root: Any = None
        self.context: Mapping[str, Any] | None = None  # e.g. the baggage of the lap's start context
        self.deadline_ns = 0
        self.dropped = 0
        self.done = False


@dataclass(slots=True)
class Completed(Generic[S]):
    """A lap ready to derive: its root, the spans that ended in time, and what was missed."""

    root: S
    spans: list[S]
    command: str | None
    truncated: bool
    late: int
    context: Mapping[str, Any] | None = None


class Assembler:
    """Thread-safe span bookkeeping; returns completed laps for the caller to derive outside the lock."""

    def __init__(
        self,
        decide: LapDecider,
        auto_server_roots: bool,
        max_pending: int,
        max_spans: int,
        grace_ms: float,
        on_evict: Callable[[int], None] | None = None,
    ) -> None:
        self._decide = decide
        self._has_rules = getattr(decide, "has_rules", True)
        self._auto = auto_server_roots
        self._max_pending = max_pending
        self._max_spans = max_spans
        self._grace_ns = int(grace_ms * 1_000_000)
        self._owner: dict[int, PendingLap] = {}
        self._pending: OrderedDict[int, PendingLap] = OrderedDict()
        self._evicted_roots: OrderedDict[int, str | None] = OrderedDict()
        self._waiting_grace: dict[int, PendingLap] = {}
        self._dropped: dict[int, PendingLap] = {}  # open spans not kept, so their children count too
        self._lock = threading.Lock()
        self._on_evict = on_evict
        self.stats = CompletionStats()

    def pending_count(self) -> int:
        return len(self._pending)

    def is_lap_root(self, name: str, kind: SpanKind, attributes: Mapping[str, Any],
                    resource: Mapping[str, Any], local_root: bool) -> tuple[bool, str | None]:
        if attributes and attributes.get("chronograph.lap") is True:
            return True, None
        if self._auto and local_root and kind in _LAP_KINDS:
            return True, None
        return self._decide(name, kind, attributes, resource)

    def start_child(self, sid: int, parent_id: int, attrs: Mapping[str, Any]) -> bool:
        """The common start, cheaply: a span whose (local) parent is tracked, with no lap rules to try
        and not itself marked a lap. True when handled; False: call :meth:`start` instead."""
        owner = self._owner.get(parent_id)
        # ``in`` before the lookup: one operation instead of a method call on almost every span.
        if owner is None or self._has_rules or (_LAP_ATTR in attrs and attrs[_LAP_ATTR] is True):
            return False
        lock = self._lock
        lock.acquire()  # not ``with``: that makes two bound methods per span
        try:
            if owner.done or len(owner.open_ids) >= self._max_spans:
                self._drop(owner, sid)
            else:
                owner.open_ids.add(sid)
                self._owner[sid] = owner
        finally:
            lock.release()
        return True

    def start(self, sid: int, parent_id: int | None, parent_remote: bool, name: str, kind: SpanKind,
              attrs: Mapping[str, Any], resource: Mapping[str, Any],
              context: Callable[[], Mapping[str, Any] | None] | None = None) -> None:
        """Track a starting span (``parent_id`` None for no parent). ``context`` is called only for a
        new lap, to keep what its start context says (baggage) for identity rules."""
        if parent_remote:
            parent_id = None  # a lap never spans processes in-process
        owner = self._owner.get(parent_id) if parent_id is not None else None
        if owner is not None and not self._has_rules and attrs.get("chronograph.lap") is not True:
            is_lap, command = False, None  # the common case: a span inside a lap, no lap rules to try
        else:
            is_lap, command = self.is_lap_root(name, kind, attrs, resource, parent_id is None)
        if not is_lap and owner is None:
            if self._dropped and parent_id is not None:
                with self._lock:
                    under = self._dropped.get(parent_id)
                    if under is not None:
                        self._drop(under, sid)
            return
        with self._lock:
            if owner is not None:
                if owner.done or len(owner.open_ids) >= self._max_spans:
                    self._drop(owner, sid)
                    if not is_lap:
                        return
                else:
                    owner.open_ids.add(sid)
            if is_lap:
                pending = PendingLap(sid, command, owner)
                if context is not None:
                    pending.context = context()
                self._pending[sid] = pending
                self._owner[sid] = pending
                if len(self._pending) > self._max_pending:
                    self._evict_oldest()
            else:
                self._owner[sid] = owner  # type: ignore[assignment]

    def end(self, span: SpanRecord) -> tuple[bool, Sequence[Completed[SpanRecord]]]:
        """Record an ended span: (is it a held lap root, the laps this completes)."""
        return self.end_item(span.span_id, span)

    def end_item(self, sid: int, span: S) -> tuple[bool, Sequence[Completed[S]]]:
        """:meth:`end` for a source that keeps its own span objects (``sid``: the span's id): the
        laps it completes hold those objects, for the source to make records of outside the lock."""
        lock = self._lock
        lock.acquire()  # not ``with``: that makes two bound methods per span
        try:
            pending = self._owner.pop(sid, None)
            if pending is None:
                return self._end_untracked(span, sid)
            if pending.root_id == sid:
                pending.root = span
                if pending.open_ids and self._grace_ns > 0:
                    pending.deadline_ns = time.monotonic_ns() + self._grace_ns
                    self._waiting_grace[sid] = pending
                    return _HELD
                return True, self._complete(pending)
            pending.open_ids.discard(sid)
            if len(pending.spans) < self._max_spans:
                pending.spans.append(span)
            else:
                pending.dropped += 1
                self.stats.dropped_spans += 1
            if pending.root is not None and not pending.open_ids and not pending.done:
                self._waiting_grace.pop(pending.root_id, None)
                return False, self._complete(pending)
            return _NOT_HELD
        finally:
            lock.release()

    def _end_untracked(self, span: S, sid: int) -> tuple[bool, Sequence[Completed[S]]]:
        """A span no pending lap owns (under the lock): dropped, the root of an evicted lap, or outside
        every lap."""
        if self._dropped:
            under = self._dropped.pop(sid, None)
            if under is not None:
                if under.dropped_ids is not None:
                    under.dropped_ids.discard(sid)
                return _NOT_HELD
        if not self._evicted_roots:
            return _NOT_HELD
        command = self._evicted_roots.pop(sid, _NOT_EVICTED)
        if command is _NOT_EVICTED:
            return _NOT_HELD
        # The lap was evicted before its root ended: derive what the root alone says.
        return True, [Completed(span, [], command, True, 0)]  # type: ignore[arg-type]

    def has_waiting(self) -> bool:
        return bool(self._waiting_grace)

    def expire(self, now_ns: int | None = None, everything: bool = False) -> list[Completed[Any]]:
        """Complete laps whose grace period has passed (all of them when ``everything``)."""
        if not self._waiting_grace:
            return []
        now = time.monotonic_ns() if now_ns is None else now_ns
        out: list[Completed[Any]] = []
        with self._lock:
            for rid, pending in list(self._waiting_grace.items()):
                if everything or pending.deadline_ns <= now:
                    del self._waiting_grace[rid]
                    self.stats.forced += 1
                    out.extend(self._complete(pending))
        return out

    def next_deadline_ns(self) -> int | None:
        with self._lock:
            return min((p.deadline_ns for p in self._waiting_grace.values()), default=None)

    # -- under the lock -------------------------------------------------------------------------

    def _drop(self, owner: PendingLap, sid: int) -> None:
        """Count a span the lap can't keep; remember it (bounded) so its descendants are counted too."""
        owner.dropped += 1
        self.stats.dropped_spans += 1
        if not owner.done:
            dropped = owner.dropped_ids
            if dropped is None:
                dropped = owner.dropped_ids = set()
            if len(dropped) < self._max_spans:
                dropped.add(sid)
                self._dropped[sid] = owner

    def _forget(self, pending: PendingLap) -> None:
        """Drop every index entry that points at a lap that is complete or evicted."""
        for oid in pending.open_ids:
            self._owner.pop(oid, None)
        pending.open_ids.clear()
        dropped = pending.dropped_ids
        if dropped:
            for did in dropped:
                self._dropped.pop(did, None)
            dropped.clear()

    def _complete(self, pending: PendingLap) -> list[Completed[Any]]:
        pending.done = True
        self._pending.pop(pending.root_id, None)
        late = len(pending.open_ids)
        self._forget(pending)
        self.stats.late_spans += late
        root = pending.root
        assert root is not None
        outer = pending.parent
        if outer is not None and not outer.done:
            # A lap nested in another: its spans (and root) belong to the outer lap too.
            outer.open_ids.discard(pending.root_id)
            room = self._max_spans - len(outer.spans)
            moved = [*pending.spans, root]
            outer.spans.extend(moved[:max(room, 0)])
            if len(moved) > room:
                outer.dropped += len(moved) - max(room, 0)
        result: list[Completed[Any]] = [Completed(
            root, pending.spans, pending.command, pending.dropped > 0 or late > 0, late, pending.context)]
        if outer is not None and not outer.done and outer.root is not None and not outer.open_ids:
            self._waiting_grace.pop(outer.root_id, None)
            result.extend(self._complete(outer))
        return result

    def _evict_oldest(self) -> None:
        for rid, pending in self._pending.items():  # noqa: B007 - rid is used after the loop
            if pending.root is None:
                break
        else:  # every pending lap has its root ended: nothing to evict by age
            return
        del self._pending[rid]
        pending.done = True
        self._owner.pop(rid, None)
        self._forget(pending)
        pending.spans.clear()
        if pending.parent is not None:  # a nested lap: its outer lap must not wait for it
            pending.parent.open_ids.discard(rid)
        self._evicted_roots[rid] = pending.command
        while len(self._evicted_roots) > self._max_pending:
            self._evicted_roots.popitem(last=False)
        self.stats.evicted += 1
        if self._on_evict is not None:
            self._on_evict(rid)
