"""The flight recorder: a timeline per lap, kept in a store, served over HTTP and in a terminal UI.

``install()`` builds the recorder stage (``_sink.recorder_sink_factory``) when ``recorder.enabled`` is
true: every lap goes to a :class:`FlightRecorder` (a deferred sink). Same shape as ``billing``: ``_sink``
(the lap sink), ``_store`` (the durable store), ``_commands`` (the CLI). Reach the
live recorder of the current process with :func:`get_recorder`; serve it with
``get_recorder().serve()`` (needs the ``server`` extra). Only core dependencies are imported here.
"""

from __future__ import annotations

from ._record import FlightRecord, decode_lap, encode_lap
from ._render import folded_stacks, render_text, to_chrome_trace, to_json
from ._sink import FlightRecorder, get_recorder, open_store, recorder_sink_factory
from ._store import FlightStore, History

__all__ = [
    "FlightRecord",
    "FlightRecorder",
    "FlightStore",
    "History",
    "decode_lap",
    "encode_lap",
    "folded_stacks",
    "get_recorder",
    "open_store",
    "recorder_sink_factory",
    "render_text",
    "to_chrome_trace",
    "to_json",
]
