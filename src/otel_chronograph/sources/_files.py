"""Files as a source: what the Collector ``file`` exporter writes (one OTLP JSON ``TracesData`` per
line, optionally gzip or zstd compressed; or length-prefixed protobuf with ``format: proto``), a single
OTLP JSON document, or a saved Jaeger v2 ``/api/v3/traces`` response.

Reading streams (one line or message at a time), so memory does not grow with the file. A malformed
line is reported as ``file:line: reason`` through ``on_error`` and skipped; the rest is still read.
"""

from __future__ import annotations

import gzip
import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from ..engine._records import SpanRecord
from ._otlp import OTLPError, records_from_json, records_from_proto

__all__ = ["MalformedInput", "OnError", "read_records"]

OnError = Callable[[str, int, str], None]


class MalformedInput:
    """An ``OnError`` for commands: prints ``file:line: reason`` (``file: reason`` for a whole file)
    to stderr and counts, so the command can exit 2 at the end as ``chronograph derive`` does."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, name: str, line: int, reason: str) -> None:
        import click

        self.count += 1
        click.echo(f"{name}:{line}: {reason}" if line else f"{name}: {reason}", err=True)

_GZIP = b"\x1f\x8b"
_ZSTD = b"\x28\xb5\x2f\xfd"
_MAX_LINE = 256 * 1024 * 1024  # one exported batch; beyond this a line is refused, not read into memory


def open_input(path: Path) -> IO[bytes]:
    """``path`` for reading, decompressed (gzip, zstd) by its magic bytes; OTLPError when it cannot be."""
    raw = path.open("rb")
    head = raw.peek(4)[:4] if isinstance(raw, io.BufferedReader) else b""
    if head.startswith(_GZIP):
        return gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    if head.startswith(_ZSTD):
        try:
            import zstandard
        except ImportError:
            raw.close()
            raise OTLPError("zstd-compressed input needs the zstandard package: "
                            "pip install 'otel-chronograph[all]'") from None
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    return raw


def read_records(path: str | Path, on_error: OnError) -> Iterator[list[SpanRecord]]:
    """Batches of records from ``path`` (one batch per line/document/message)."""
    p = Path(path)
    name = str(path)
    try:
        stream = open_input(p)
    except OTLPError as exc:
        on_error(name, 0, str(exc))
        return
    except OSError as exc:
        on_error(name, 0, f"cannot read: {exc.strerror or exc}")
        return
    with stream:
        buffered: io.BufferedReader = (stream if isinstance(stream, io.BufferedReader)
                                       else io.BufferedReader(stream))  # type: ignore[arg-type]
        try:
            first = buffered.peek(1)[:1]
        except (OSError, EOFError, gzip.BadGzipFile) as exc:
            on_error(name, 0, f"cannot read: {exc}")
            return
        if first and first not in b"{[ \t\r\n":
            yield from _proto_messages(buffered, name, on_error)
        else:
            yield from _json_lines(buffered, name, on_error)


def _json_lines(stream: io.BufferedReader, name: str, on_error: OnError) -> Iterator[list[SpanRecord]]:
    """JSON lines; a file that is one pretty-printed document is read whole (it is one document)."""
    number = 0
    whole: list[bytes] | None = None
    try:
        for number, line in enumerate(stream, start=1):
            if whole is not None:
                whole.append(line)
                continue
            if len(line) > _MAX_LINE:
                on_error(name, number, f"line longer than {_MAX_LINE} bytes")
                continue
            text = line.strip()
            if not text:
                continue
            try:
                doc = json.loads(text)
            except ValueError as exc:
                if number == 1 and text in (b"{", b"["):  # a multi-line document
                    whole = [line]
                    continue
                on_error(name, number, f"not JSON: {exc}")
                continue
            try:
                batch = records_from_json(doc)
            except OTLPError as exc:
                on_error(name, number, str(exc))
                continue
            if batch:
                yield batch
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        on_error(name, number + 1, f"cannot read: {exc}")
        return
    if whole is not None:
        try:
            batch = records_from_json(json.loads(b"".join(whole)))
        except ValueError as exc:  # OTLPError is a ValueError too
            on_error(name, 1, str(exc) if isinstance(exc, OTLPError) else f"not JSON: {exc}")
            return
        if batch:
            yield batch


def _proto_messages(stream: io.BufferedReader, name: str, on_error: OnError) -> Iterator[list[SpanRecord]]:
    """The file exporter's ``format: proto``: each ``TracesData`` prefixed by its 4-byte length."""
    from google.protobuf.message import DecodeError
    from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

    number = 0
    while True:
        head = stream.read(4)
        if not head:
            return
        number += 1
        size = int.from_bytes(head, "big")
        if len(head) < 4 or size > _MAX_LINE:
            on_error(name, number, "not OTLP protobuf (bad length prefix); expected the file exporter's "
                     "format: proto or OTLP JSON")
            return
        body = stream.read(size)
        if len(body) < size:
            on_error(name, number, f"truncated message: {len(body)} of {size} bytes")
            return
        message = TracesData()
        try:
            message.ParseFromString(body)
            batch = list(records_from_proto(message.resource_spans))
        except (DecodeError, OTLPError) as exc:
            on_error(name, number, f"malformed protobuf message: {exc}")
            continue
        if batch:
            yield batch
