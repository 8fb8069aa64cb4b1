"""``insights replay``: re-send stored or exported traces over OTLP, as if they happened now.

Ids are fresh so the replayed traces never merge with the originals in a backend, and consistent so
the structure survives: a new id is a keyed hash (BLAKE2b, a random key per run) of the old one, so a
parent link maps to the same new span id as its parent without a table that grows with the input.
Times move so the earliest span starts now; trace ``k`` then starts ``(start_k - earliest) / speed``
later and is sent at that moment. With ``--speed max`` nothing waits and a trace starts when it is
sent (order kept, nothing in the future). Within a trace every offset is kept. Requests carry at most
``--batch`` spans.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import click

from ..engine import SpanRecord

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

__all__ = ["IdRemap", "Replayer", "replay_command"]

#: (spans of one trace, or of part of one; the trace's first start in ns; is this its first part?)
Groups = Iterator[tuple[list[SpanRecord], int, bool]]

_SCOPE = "otel-chronograph.replay"
_INT64 = (-(1 << 63), (1 << 63) - 1)
_FLAG_HAS_REMOTE, _FLAG_REMOTE = 0x100, 0x200


class IdRemap:
    """Fresh trace and span ids, the same new id every time for the same old one (within one run)."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key if key is not None else os.urandom(32)

    def _hash(self, data: bytes, size: int, person: bytes) -> int:
        value = int.from_bytes(hashlib.blake2b(data, digest_size=size, key=self._key, person=person).digest(),
                               "big")
        return value or 1  # an all-zero id is invalid in OTLP

    def trace(self, trace_id: int) -> int:
        return self._hash(trace_id.to_bytes(16, "big"), 16, b"trace")

    def span(self, trace_id: int, span_id: int) -> int:
        """Span ids are unique within a trace only, so the trace is part of the key."""
        return self._hash(trace_id.to_bytes(16, "big") + span_id.to_bytes(8, "big"), 8, b"span")


# -- OTLP protobuf ------------------------------------------------------------------------------


def _set_value(target: Any, value: Any) -> None:
    """``value`` into the ``AnyValue`` message ``target`` (the SDK's attribute types, and JSON's)."""
    if value is None:
        return
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        if _INT64[0] <= value <= _INT64[1]:
            target.int_value = value
        else:
            target.string_value = str(value)
    elif isinstance(value, float):
        target.double_value = value
    elif isinstance(value, str):
        target.string_value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    elif isinstance(value, (bytes, bytearray)):
        target.bytes_value = bytes(value)
    elif isinstance(value, Mapping):
        _set_attributes(target.kvlist_value.values, value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _set_value(target.array_value.values.add(), item)
    else:
        target.string_value = str(value)


def _set_attributes(kvs: Any, attributes: Mapping[str, Any]) -> None:
    for key, value in attributes.items():
        kv = kvs.add()
        kv.key = str(key)
        _set_value(kv.value, value)


class RequestBuilder:
    """Re-encoded spans collected per resource into one ``ExportTraceServiceRequest``."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self._new = ExportTraceServiceRequest
        self.reset()

    def reset(self) -> None:
        self.request: ExportTraceServiceRequest = self._new()
        self._scopes: dict[int, Any] = {}
        self._keep: list[Mapping[str, Any]] = []  # resources alive while their id() is a key
        self.spans = 0

    def add(self, record: SpanRecord, ids: IdRemap, shift_ns: int) -> None:
        """``record`` with new ids and times moved by ``shift_ns``."""
        scope = self._scopes.get(id(record.resource))
        if scope is None:
            rs = self.request.resource_spans.add()
            _set_attributes(rs.resource.attributes, record.resource)
            scope = rs.scope_spans.add()
            scope.scope.name = _SCOPE
            self._scopes[id(record.resource)] = scope
            self._keep.append(record.resource)
        span = scope.spans.add()
        span.trace_id = ids.trace(record.trace_id).to_bytes(16, "big")
        span.span_id = ids.span(record.trace_id, record.span_id).to_bytes(8, "big")
        if record.parent_id is not None:
            span.parent_span_id = ids.span(record.trace_id, record.parent_id).to_bytes(8, "big")
        if record.parent_remote is not None:
            span.flags = _FLAG_HAS_REMOTE | (_FLAG_REMOTE if record.parent_remote else 0)
        span.name = record.name.encode("utf-8", "backslashreplace").decode("utf-8")
        span.kind = record.kind.value + 1  # OTLP numbers kinds from 1 (0 is unspecified)
        span.start_time_unix_nano = max(record.start_time + shift_ns, 0)
        span.end_time_unix_nano = max(record.end_time + shift_ns, 0)
        _set_attributes(span.attributes, record.attributes)
        for event in record.events:
            ev = span.events.add()
            ev.name = event.name
            ev.time_unix_nano = max(event.timestamp + shift_ns, 0)
            _set_attributes(ev.attributes, event.attributes)
        if record.error:
            span.status.code = 2
            if record.status_message:
                span.status.message = record.status_message
        self.spans += 1


# -- transport ----------------------------------------------------------------------------------


class Sender(Protocol):
    def send(self, request: ExportTraceServiceRequest) -> int:
        """Send; the number of spans the receiver rejected. ClickException when it cannot."""

    def close(self) -> None: ...


class GrpcSender:
    """OTLP/gRPC with grpcio (a dependency of the OTLP exporter this package installs)."""

    def __init__(self, endpoint: str, timeout: float = 30.0, connect_timeout: float = 10.0) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import TraceServiceStub

        parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if not parsed.netloc:
            raise click.ClickException(f"--endpoint {endpoint!r}: expected host:port or http(s)://host:port")
        self.endpoint = parsed.netloc
        options = [("grpc.max_send_message_length", -1)]
        self._grpc = grpc
        self._channel = (grpc.secure_channel(parsed.netloc, grpc.ssl_channel_credentials(), options)
                         if parsed.scheme == "https" else grpc.insecure_channel(parsed.netloc, options))
        self._stub = TraceServiceStub(self._channel)  # type: ignore[no-untyped-call]
        self._timeout = timeout
        try:
            grpc.channel_ready_future(self._channel).result(timeout=connect_timeout)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise click.ClickException(f"{self.endpoint}: cannot connect (OTLP/gRPC, "
                                       f"{connect_timeout:g} s)") from None

    def send(self, request: ExportTraceServiceRequest) -> int:
        grpc = self._grpc
        for attempt in range(4):
            try:
                response = self._stub.Export(request, timeout=self._timeout)
                return int(response.partial_success.rejected_spans)
            except grpc.RpcError as exc:
                code = exc.code()
                if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED) and attempt < 3:
                    time.sleep(0.5 * 2 ** attempt)
                    continue
                raise click.ClickException(f"{self.endpoint}: export failed: {code.name}: "
                                           f"{exc.details()}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._channel.close()


class HttpSender:
    """OTLP/HTTP protobuf: ``POST {endpoint}/v1/traces`` (the path is kept when the URL has one)."""

    def __init__(self, endpoint: str, timeout: float = 30.0) -> None:
        parsed = urllib.parse.urlsplit(endpoint if "://" in endpoint else f"http://{endpoint}")
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise click.ClickException(f"--endpoint {endpoint!r}: expected http(s)://host:port[/path]")
        path = parsed.path if parsed.path not in ("", "/") else "/v1/traces"
        self.url = urllib.parse.urlunsplit((parsed.scheme, parsed.netloc, path, parsed.query, ""))
        self._timeout = timeout

    def send(self, request: ExportTraceServiceRequest) -> int:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        body = request.SerializeToString()
        for attempt in range(4):
            req = urllib.request.Request(self.url, data=body, method="POST",
                                         headers={"Content-Type": "application/x-protobuf"})
            try:
                with urllib.request.urlopen(req, timeout=self._timeout) as resp:
                    answer = ExportTraceServiceResponse()
                    try:
                        answer.ParseFromString(resp.read())
                    except Exception:  # a non-OTLP body from a 2xx answer: nothing was rejected
                        return 0
                    return int(answer.partial_success.rejected_spans)
            except urllib.error.HTTPError as exc:
                if exc.code in (429, 502, 503, 504) and attempt < 3:
                    time.sleep(0.5 * 2 ** attempt)
                    continue
                detail = exc.read(200).decode("utf-8", "replace").strip()
                raise click.ClickException(f"{self.url}: export failed: HTTP {exc.code} {detail}") from None
            except (urllib.error.URLError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                raise click.ClickException(f"{self.url}: cannot connect (OTLP/HTTP): {reason}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        pass


# -- scheduling ---------------------------------------------------------------------------------


@dataclass
class Replayer:
    """Sends traces on the replay schedule. ``clock``/``sleep`` are injectable (tests run no clock)."""

    sender: Sender
    earliest_ns: int
    speed: float = 1.0  # 0 = as fast as possible
    batch_spans: int = 1000
    ids: IdRemap = field(default_factory=IdRemap)
    clock: Callable[[], int] = time.time_ns
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    progress: Callable[[Replayer, bool], None] | None = None
    traces: int = 0
    spans: int = 0
    rejected: int = 0
    requests: int = 0

    def __post_init__(self) -> None:
        self.start_ns = self._last_ns = self.clock()
        self._start_mono = self.monotonic()
        self._shifts: OrderedDict[int, int] = OrderedDict()
        self._builder = RequestBuilder()

    def elapsed_s(self) -> float:
        """Seconds since the replay started."""
        return self.monotonic() - self._start_mono

    def shift_ns(self, trace_id: int, trace_start_ns: int) -> int:
        """How far the spans of a trace starting at ``trace_start_ns`` move: to its place on the
        schedule, or (``speed`` 0) to the moment its first part is sent."""
        if self.speed > 0:
            return self.start_ns + int((trace_start_ns - self.earliest_ns) / self.speed) - trace_start_ns
        shift = self._shifts.get(trace_id)
        if shift is None:
            self._last_ns = max(self.clock(), self._last_ns)
            shift = self._shifts[trace_id] = self._last_ns - trace_start_ns
            if len(self._shifts) > 100_000:  # a bound; a trace split further apart than this is rare
                self._shifts.popitem(last=False)
        return shift

    def due_s(self, trace_start_ns: int) -> float:
        """Seconds after the replay started at which that trace is sent."""
        return 0.0 if self.speed <= 0 else (trace_start_ns - self.earliest_ns) / self.speed / 1e9

    def add(self, records: Iterable[SpanRecord], trace_start_ns: int, new_trace: bool = True) -> None:
        """Spans of one trace (or part of one: every part gives the trace's own first start, and
        only the first part is a ``new_trace``)."""
        wait = self.due_s(trace_start_ns) - self.elapsed_s()
        if wait > 0:
            self.flush()
            self.sleep(wait)
        batch = list(records)
        if not batch:
            return
        shift = self.shift_ns(batch[0].trace_id, trace_start_ns)
        self.traces += new_trace
        for record in batch:
            self._builder.add(record, self.ids, shift)
            if self._builder.spans >= self.batch_spans:
                self.flush()

    def flush(self) -> None:
        if not self._builder.spans:
            return
        self.rejected += self.sender.send(self._builder.request)
        self.spans += self._builder.spans
        self.requests += 1
        self._builder.reset()
        if self.progress is not None:
            self.progress(self, False)

    def close(self) -> None:
        self.flush()
        if self.progress is not None:
            self.progress(self, True)


# -- sources ------------------------------------------------------------------------------------


def by_trace(batch: Iterable[SpanRecord]) -> dict[int, list[SpanRecord]]:
    out: dict[int, list[SpanRecord]] = {}
    for record in batch:
        out.setdefault(record.trace_id, []).append(record)
    return out


def _ignore(name: str, line: int, reason: str) -> None:
    pass


@dataclass
class FileSource:
    """OTLP files read twice: first each trace's first start (the schedule), then the spans."""

    paths: tuple[str, ...]
    errors: int = 0

    def _on_error(self, name: str, line: int, reason: str) -> None:
        self.errors += 1
        from .._text import safe

        click.echo(f"{safe(name)}:{line}: {safe(reason)}" if line else f"{safe(name)}: {safe(reason)}",
                   err=True)

    def _batches(self, on_error: Callable[[str, int, str], None]) -> Iterator[list[SpanRecord]]:
        from ..sources import read_records

        for path in self.paths:
            yield from read_records(path, on_error)

    def trace_starts(self) -> dict[int, int]:
        starts: dict[int, int] = {}
        for batch in self._batches(self._on_error):
            for r in batch:
                if r.start_time < starts.get(r.trace_id, r.start_time + 1):
                    starts[r.trace_id] = r.start_time
        return starts

    def groups(self, starts: Mapping[int, int]) -> Iterator[tuple[list[SpanRecord], int, bool]]:
        """(spans of one trace in one batch, the trace's first start, first part of it?), batches in
        file order, the traces of a batch in start order."""
        seen: set[int] = set()
        for batch in self._batches(_ignore):  # malformed input was reported in the first pass
            parts = by_trace(batch)
            for trace in sorted(parts, key=lambda t: starts.get(t, 0)):
                first = trace not in seen
                seen.add(trace)
                yield parts[trace], starts.get(trace, min(r.start_time for r in parts[trace])), first


def _store_groups(db: str, label: str, since: str | None, until: str | None) -> tuple[int | None, Groups]:
    from ._store import open_store, window_sql
    from ._traces import stored_traces

    conn = open_store(db, read_only=True)
    window, window_params = window_sql(since, until)
    where, params = f"label = ? AND {window}", [label, *window_params]
    row = conn.execute(f"SELECT min(start_ns) FROM spans WHERE {where}", params).fetchone()
    earliest = row[0] if row else None

    def groups() -> Groups:
        try:
            for trace in stored_traces(conn, where, params):
                yield trace, min(r.start_time for r in trace), True
        finally:
            conn.close()

    return earliest, groups()


class Progress:
    """One line on stderr, at most once a second (rewritten in place on a terminal)."""

    def __init__(self) -> None:
        self.last = 0.0

    def __call__(self, replayer: Replayer, final: bool) -> None:
        now = time.monotonic()
        if not final and now - self.last < 1.0:
            return
        self.last = now
        click.echo(progress_line(replayer, now), err=True, nl=final or not sys.stderr.isatty())


def progress_line(replayer: Replayer, now: float) -> str:
    elapsed = max(replayer.elapsed_s(), 1e-9)
    line = (f"replay: {replayer.traces} traces, {replayer.spans} spans sent in {replayer.requests} requests "
            f"({replayer.spans / elapsed:,.0f} spans/s)")
    if replayer.rejected:
        line += f", {replayer.rejected} rejected by the receiver"
    return ("\r" + line) if sys.stderr.isatty() else line


def _speed(text: str) -> float:
    if text.strip().lower() in ("max", "inf", "0"):
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise click.BadParameter(f"{text!r}: a factor (2 = twice as fast) or 'max'") from None
    if not value >= 0 or value == float("inf"):
        raise click.BadParameter(f"{text!r}: a factor ≥ 0 (0 or 'max' = no waiting)")
    return value


@click.command("replay")
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--db", "db", default=None, type=click.Path(dir_okay=False),
              help="Replay the traces of this insights store (default when no PATH is given: "
                   "chronograph-insights.duckdb).")
@click.option("--endpoint", required=True, help="OTLP receiver: host:port or http://host:port (gRPC), "
                                                "http://host:port[/v1/traces] (HTTP).")
@click.option("--protocol", type=click.Choice(["grpc", "http"]), default="grpc", show_default=True)
@click.option("--speed", default="1", show_default=True,
              help="2 = twice as fast (gaps between traces halved); 0 or 'max' = no waiting, each trace "
                   "stamped with the time it is sent.")
@click.option("--batch", "batch_spans", default=1000, show_default=True, type=click.IntRange(1, 100_000),
              help="At most this many spans per OTLP request.")
@click.option("--connect-timeout", default=10.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds to wait for a gRPC connection before giving up.")
@click.option("--label", default="prod", show_default=True,
              help="With --db: the stored traces of this label (ingest --label; test runs are not prod).")
@click.option("--since", default=None, help="With --db: only spans starting at or after (ISO 8601).")
@click.option("--until", default=None, help="With --db: only spans starting before (ISO 8601).")
def replay_command(paths: tuple[str, ...], db: str | None, endpoint: str, protocol: str, speed: str,
                   batch_spans: int, connect_timeout: float, label: str, since: str | None,
                   until: str | None) -> None:
    """Re-send traces over OTLP with fresh ids, times shifted to now, at a chosen speed."""
    factor = _speed(speed)
    if paths and db:
        raise click.UsageError("give PATH... or --db, not both")
    source: FileSource | None = None
    if paths:
        for path in paths:
            if not os.path.isfile(path):
                raise click.ClickException(f"{path}: no such file")
        source = FileSource(paths)
        starts = source.trace_starts()
        earliest = min(starts.values()) if starts else None
        groups: Groups = source.groups(starts)
    else:
        from ._schema import DEFAULT_DB

        db = db or DEFAULT_DB
        if not os.path.isfile(db):
            raise click.ClickException(f"{db}: no such insights store")
        earliest, groups = _store_groups(db, label, since, until)
    if earliest is None:
        click.echo("replay: no spans to send", err=True)
        sys.exit(2 if source is not None and source.errors else 0)
    sender: Sender = (GrpcSender(endpoint, connect_timeout=connect_timeout) if protocol == "grpc"
                      else HttpSender(endpoint))
    replayer = Replayer(sender, earliest, factor, batch_spans, progress=Progress())
    try:
        for records, trace_start, first in groups:
            replayer.add(records, trace_start, first)
        replayer.close()
    finally:
        sender.close()
    sys.exit(2 if source is not None and source.errors else 0)
