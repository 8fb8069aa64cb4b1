"""Exporters: where the gateway sends spans (lap roots annotated) — ``otlp_grpc``, ``otlp_http``,
``debug``, ``file`` and ``nop``, each behind a bounded sending queue with retry and backoff, as the
Collector's exporter helper does.

Requests are already serialized (see :mod:`._wire`): the gRPC exporter sends the bytes as they are
(a unary call without a serializer), the HTTP one posts them. Nothing is dropped silently: a full queue
makes the receivers refuse new data (the sender's retry keeps it), a failed export is retried with
exponential backoff (honouring the server's RetryInfo / Retry-After) until ``max_elapsed_time``, and
whatever is given up is counted per exporter.
"""

from __future__ import annotations

import base64
import gzip
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO, Any, Protocol

from .._pipeline import _Once
from .._worker import Deadline, Worker
from ._config import (
    ClientTLS,
    DebugExporterConfig,
    ExporterConfig,
    FileExporterConfig,
    OtlpGrpcExporterConfig,
    OtlpHttpExporterConfig,
    RetryOnFailure,
    SendingQueue,
)
from ._wire import Batch

__all__ = ["ExportFailed", "ExportQueue", "Sender", "make_sender", "traces_json"]

_log = logging.getLogger("otel_chronograph.gateway")

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
_RETRYABLE_HTTP = (429, 502, 503, 504)
_ID_KEYS = ("traceId", "spanId", "parentSpanId")


class ExportFailed(Exception):
    """One failed attempt: ``retryable`` as the OTLP specification says, ``throttle_s`` when the
    server said how long to wait (gRPC RetryInfo, HTTP Retry-After)."""

    def __init__(self, message: str, retryable: bool, throttle_s: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.throttle_s = throttle_s


class Sender(Protocol):
    def send(self, body: bytes, spans: int) -> int:
        """Send one serialized ``ExportTraceServiceRequest``; the number of spans the server rejected
        (partial success). Raises :class:`ExportFailed`."""

    def close(self) -> None: ...


def _read(path: str | None) -> bytes | None:
    if path is None:
        return None
    with open(path, "rb") as f:
        return f.read()


# -- OTLP/gRPC ------------------------------------------------------------------------------------


def retry_delay_of(trailing: Any) -> float | None:
    """The server's RetryInfo, from ``grpc-status-details-bin`` (google.rpc.Status, as Go servers send)
    or ``google.rpc.retryinfo-bin`` (as the Python SDK reads it)."""
    from google.rpc import error_details_pb2, status_pb2

    info = None
    for key, value in trailing or ():
        try:
            if key == "google.rpc.retryinfo-bin":
                info = error_details_pb2.RetryInfo.FromString(value)
            elif key == "grpc-status-details-bin":
                for detail in status_pb2.Status.FromString(value).details:
                    if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                        info = error_details_pb2.RetryInfo()
                        detail.Unpack(info)
        except Exception:  # a malformed detail is no throttle
            continue
        if info is not None:
            return float(info.retry_delay.seconds + info.retry_delay.nanos / 1e9)
    return None


class GrpcSender:
    def __init__(self, config: OtlpGrpcExporterConfig) -> None:
        import grpc
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

        self._grpc = grpc
        endpoint = config.endpoint
        tls: ClientTLS = config.tls
        secure = not tls.insecure
        if endpoint.startswith("http://"):
            endpoint, secure = endpoint[len("http://"):], False
        elif endpoint.startswith("https://"):
            endpoint, secure = endpoint[len("https://"):], True
        options: list[tuple[str, Any]] = [("grpc.max_send_message_length", -1)]
        if secure:
            if tls.server_name_override:
                options.append(("grpc.ssl_target_name_override", tls.server_name_override))
            creds = grpc.ssl_channel_credentials(_read(tls.ca_file), _read(tls.key_file),
                                                 _read(tls.cert_file))
            self._channel = grpc.secure_channel(endpoint.rstrip("/"), creds, options)
        else:
            self._channel = grpc.insecure_channel(endpoint.rstrip("/"), options)
        self._call = self._channel.unary_unary(
            EXPORT_METHOD, request_serializer=None,
            response_deserializer=ExportTraceServiceResponse.FromString)
        self._metadata = tuple((k.lower(), v) for k, v in config.headers.items())
        self._compression = grpc.Compression.Gzip if config.compression == "gzip" else None
        self._timeout = config.timeout

    def send(self, body: bytes, spans: int) -> int:
        grpc = self._grpc
        try:
            response = self._call(body, timeout=self._timeout, metadata=self._metadata,
                                  compression=self._compression)
        except grpc.RpcError as exc:
            code = exc.code()
            retryable = code in (grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
                                 grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE,
                                 grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS,
                                 grpc.StatusCode.RESOURCE_EXHAUSTED)
            raise ExportFailed(f"{code.name}: {exc.details()}", retryable,
                               retry_delay_of(exc.trailing_metadata())) from None
        return int(response.partial_success.rejected_spans)

    def close(self) -> None:
        self._channel.close()


# -- OTLP/HTTP ------------------------------------------------------------------------------------


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            return max(parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


def traces_json(body: bytes) -> bytes:
    """A serialized request as OTLP JSON (hex ids, integer enums), one line."""
    from google.protobuf.json_format import MessageToDict
    from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

    doc = MessageToDict(TracesData.FromString(body), use_integers_for_enums=True)

    def hex_ids(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key in _ID_KEYS and isinstance(value, str):
                    node[key] = base64.b64decode(value).hex()
                else:
                    hex_ids(value)
        elif isinstance(node, list):
            for item in node:
                hex_ids(item)

    hex_ids(doc)
    return json.dumps(doc, separators=(",", ":")).encode()


class HttpSender:
    def __init__(self, config: OtlpHttpExporterConfig) -> None:
        import requests

        self._requests = requests
        base = (config.endpoint or "").rstrip("/")
        self.url = config.traces_endpoint or f"{base}/v1/traces"
        self._session = requests.Session()
        tls = config.tls
        self._session.verify = False if tls.insecure_skip_verify else (tls.ca_file or True)
        if tls.cert_file and tls.key_file:
            self._session.cert = (tls.cert_file, tls.key_file)
        self._json = config.encoding == "json"
        self._gzip = config.compression == "gzip"
        self._headers = {**config.headers,
                         "Content-Type": "application/json" if self._json else "application/x-protobuf"}
        if self._gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._timeout = config.timeout

    def send(self, body: bytes, spans: int) -> int:
        data = traces_json(body) if self._json else body
        if self._gzip:
            data = gzip.compress(data)
        try:
            response = self._session.post(self.url, data=data, headers=self._headers, timeout=self._timeout)
        except self._requests.RequestException as exc:
            raise ExportFailed(f"{type(exc).__name__}: {exc}", True) from None
        status = response.status_code
        if 200 <= status < 300:
            return _partial(response.content, response.headers.get("Content-Type"))
        message = f"HTTP {status}: {response.text[:200]}"
        if status in _RETRYABLE_HTTP:
            raise ExportFailed(message, True, _retry_after(response.headers.get("Retry-After")))
        raise ExportFailed(message, False)

    def close(self) -> None:
        self._session.close()


def _partial(content: bytes, content_type: str | None) -> int:
    from google.protobuf import json_format
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse

    if not content:
        return 0
    response = ExportTraceServiceResponse()
    try:
        if (content_type or "").startswith("application/json"):
            json_format.Parse(content, response, ignore_unknown_fields=True)
        else:
            response.ParseFromString(content)
    except Exception:
        return 0
    return int(response.partial_success.rejected_spans)


# -- debug, file, nop -------------------------------------------------------------------------------


class DebugSender:
    """Like the Collector's debug exporter: a summary per request (basic), a line per span (normal),
    or the whole request as OTLP JSON (detailed), to the gateway's log (stderr)."""

    def __init__(self, config: DebugExporterConfig) -> None:
        self._verbosity = config.verbosity

    def send(self, body: bytes, spans: int) -> int:
        if self._verbosity == "basic":
            _log.info("debug exporter: %d spans", spans)
        elif self._verbosity == "normal":
            from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

            for rs in TracesData.FromString(body).resource_spans:
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        lap = any(kv.key == "chronograph.lap_ms" for kv in s.attributes)
                        _log.info("debug exporter: %s %s %s%s", s.trace_id.hex(), s.span_id.hex(), s.name,
                                  " [lap]" if lap else "")
        else:
            _log.info("debug exporter: %s", traces_json(body).decode())
        return 0

    def close(self) -> None:
        pass


class FileSender:
    """The Collector's file exporter formats: OTLP JSON lines, or ``TracesData`` each prefixed by its
    4-byte big-endian length (``chronograph derive`` reads both)."""

    def __init__(self, config: FileExporterConfig) -> None:
        self._proto = config.format == "proto"
        self._file: IO[bytes] = open(config.path, "ab" if config.append else "wb")  # noqa: SIM115
        self._lock = threading.Lock()

    def send(self, body: bytes, spans: int) -> int:
        data = len(body).to_bytes(4, "big") + body if self._proto else traces_json(body) + b"\n"
        with self._lock:
            try:
                self._file.write(data)
                self._file.flush()
            except OSError as exc:
                raise ExportFailed(f"cannot write: {exc}", False) from None
        return 0

    def close(self) -> None:
        with self._lock:
            self._file.close()


class NopSender:
    def send(self, body: bytes, spans: int) -> int:
        return 0

    def close(self) -> None:
        pass


def make_sender(etype: str, config: ExporterConfig) -> Sender:
    if etype == "otlp_grpc":
        assert isinstance(config, OtlpGrpcExporterConfig)
        return GrpcSender(config)
    if etype == "otlp_http":
        assert isinstance(config, OtlpHttpExporterConfig)
        return HttpSender(config)
    if etype == "debug":
        assert isinstance(config, DebugExporterConfig)
        return DebugSender(config)
    if etype == "file":
        assert isinstance(config, FileExporterConfig)
        return FileSender(config)
    return NopSender()


# -- the sending queue ------------------------------------------------------------------------------


class ExportQueue:
    """A bounded queue of requests for one exporter, sent by ``num_consumers`` threads with retry.

    ``put`` waits for room while running (the receivers refuse new data before it comes to that: see
    :meth:`full`); once shutdown has begun everything is taken, and the queue is drained until the
    shutdown deadline, after which what is left is counted as failed.
    """

    def __init__(self, name: str, sender: Sender, queue: SendingQueue, retry: RetryOnFailure,
                 rand: Callable[[], float] = random.random) -> None:
        self.name = name
        self.sender = sender
        self._retry = retry
        self._rand = rand
        self._max = queue.queue_size if queue.enabled else 1
        self._items: deque[Batch] = deque()
        self._cond = threading.Condition()
        self._in_flight = 0
        self._closing_at: float | None = None  # monotonic deadline once shutdown began
        self.sent_spans = 0
        self.failed_spans = 0  # given up after retries, or a permanent error
        self.rejected_spans = 0  # the server said it rejected them (partial success)
        self.queued_spans = 0
        # Each exporter logs its own first failure of each kind (a process can run several gateways:
        # the tests do), then counts.
        self._log_once = _Once()
        self._workers = [Worker(f"chronograph-export-{name}-{i}", self._step, 1.0)
                         for i in range(queue.num_consumers if queue.enabled else 1)]

    def size(self) -> int:
        return len(self._items)

    def full(self) -> bool:
        return len(self._items) >= self._max

    def put(self, batch: Batch) -> None:
        with self._cond:
            while len(self._items) >= self._max and self._closing_at is None:
                self._cond.wait()
            self._items.append(batch)
            self.queued_spans += batch[1]
        for w in self._workers:
            w.wake()

    def _step(self) -> float | None:
        while True:
            with self._cond:
                if not self._items:
                    return None
                batch = self._items.popleft()
                self.queued_spans -= batch[1]
                self._in_flight += 1
                self._cond.notify_all()
            try:
                self._send(batch)
            finally:
                with self._cond:
                    self._in_flight -= 1
                    self._cond.notify_all()

    def _fail(self, spans: int, why: str) -> None:
        self.failed_spans += spans
        self._log_once("export", "chronograph gateway: exporter %s dropped %d spans (%s); counted in "
                 "chronograph.gateway.export.failed_spans", self.name, spans, why)

    def _send(self, batch: Batch) -> None:
        body, spans = batch
        retry = self._retry
        started = time.monotonic()
        interval = retry.initial_interval
        while True:
            try:
                rejected = self.sender.send(body, spans)
            except ExportFailed as exc:
                if not (retry.enabled and exc.retryable):
                    self._fail(spans, str(exc))
                    return
                jitter = 1 + retry.randomization_factor * (2 * self._rand() - 1)
                delay = exc.throttle_s if exc.throttle_s is not None else interval * jitter
                wake_at = time.monotonic() + delay
                if retry.max_elapsed_time and wake_at - started > retry.max_elapsed_time:
                    self._fail(spans, f"{exc}; retries over max_elapsed_time")
                    return
                if not self._wait(wake_at):
                    self._fail(spans, f"{exc}; shutdown deadline")
                    return
                interval = min(interval * retry.multiplier, retry.max_interval)
                continue
            except Exception as exc:  # a bug or an unexpected library error: counted, never raised
                self._fail(spans, f"{type(exc).__name__}: {exc}")
                return
            with self._cond:
                self.sent_spans += spans - rejected
                self.rejected_spans += rejected
            return

    def _wait(self, wake_at: float) -> bool:
        """Back off until ``wake_at``; False when shutdown's deadline comes first."""
        def give_up() -> bool:
            return self._closing_at is not None and wake_at > self._closing_at

        with self._cond:
            return not self._cond.wait_for(give_up, timeout=max(wake_at - time.monotonic(), 0.0))

    def drain(self, deadline: Deadline) -> bool:
        """Wait until everything queued was sent (or given up); False at the deadline."""
        for w in self._workers:
            if self._items:
                w.wake()
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._in_flight, deadline.left())

    def begin_shutdown(self, deadline: Deadline) -> None:
        left = deadline.left()
        with self._cond:
            self._closing_at = time.monotonic() + (left if left is not None else 1e9)
            self._cond.notify_all()

    def shutdown(self, deadline: Deadline) -> bool:
        """Drain within the deadline; False when anything was given up on the way."""
        failed_before = self.failed_spans
        self.begin_shutdown(deadline)
        ok = self.drain(deadline)
        for w in self._workers:
            w.stop(deadline.left())
        with self._cond:
            left = sum(b[1] for b in self._items)
            self._items.clear()
            self.queued_spans = 0
        if left:
            self._fail(left, "still queued at the shutdown deadline")
        try:
            self.sender.close()
        except Exception:
            self._log_once("close", "chronograph gateway: exporter %s failed to close", self.name)
        return ok and self.failed_spans == failed_before
