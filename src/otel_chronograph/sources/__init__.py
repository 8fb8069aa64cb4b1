"""Sources: where span records come from. The SDK processor (in-process), OTLP protobuf and JSON
(the gateway, files, Jaeger), and files as the Collector's ``file`` exporter writes them."""

from __future__ import annotations

from ._files import read_records
from ._otlp import OTLPError, records_from_json, records_from_proto
from ._otlp_request import decode_export_request, export_response
from ._processor import ChronographProcessor
from ._sdk import record_of

__all__ = [
    "ChronographProcessor",
    "OTLPError",
    "decode_export_request",
    "export_response",
    "read_records",
    "record_of",
    "records_from_json",
    "records_from_proto",
]
