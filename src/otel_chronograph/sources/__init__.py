"""Sources: where span records come from. The SDK processor (in-process), OTLP protobuf and JSON
(the gateway, files, Jaeger), and files as the Collector's ``file`` exporter writes them.

Only the in-process processor is imported with the package: ``import otel_chronograph`` must not pay for
the OTLP decoders and file readers an app that only calls ``install()`` never uses (PEP 562 lazy names).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._processor import ChronographProcessor
from ._sdk import record_of

if TYPE_CHECKING:
    from ._files import read_records
    from ._otlp import OTLPError, records_from_json, records_from_proto
    from ._otlp_request import decode_export_request, export_response

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

_LAZY = {"read_records": "._files", "OTLPError": "._otlp", "records_from_json": "._otlp",
         "records_from_proto": "._otlp", "decode_export_request": "._otlp_request",
         "export_response": "._otlp_request"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value
