"""The flight recorder's lap sink (a deferred stage: it runs on the chronograph's sink worker), and the
health of its store as metrics."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import MeterProvider

from .._config import ChronographConfig, RecorderConfig
from .._lap import Lap
from .._metrics import observe_counter, observe_gauge
from ._record import FlightRecord
from ._store import FlightStore

if TYPE_CHECKING:
    from ._server import EmbeddedServer

__all__ = ["FlightRecorder", "get_recorder", "open_store", "recorder_sink_factory"]

_current: FlightRecorder | None = None
_current_lock = threading.Lock()


def open_store(config: RecorderConfig, **kwargs: Any) -> FlightStore:
    """A store as the recorder configuration describes it (SQLite at ``path`` when ``persistent``)."""
    return FlightStore(
        config.path if config.persistent else None,
        max_records=config.max_records,
        retention_hours=config.retention_hours,
        anomaly_factor=config.anomaly_factor,
        **kwargs,
    )


class FlightRecorder:
    """The lap sink of the flight recorder (deferred: it runs on the chronograph's sink thread).

    ``recorder(lap)`` records; ``flush``/``shutdown`` are called by the processor's
    ``force_flush``/``shutdown``. ``store`` is the live :class:`FlightStore` (still readable after
    shutdown). Its health goes to ``meter_provider`` (None: the global one).
    """

    def __init__(self, config: RecorderConfig | None = None, store: FlightStore | None = None,
                 meter_provider: MeterProvider | None = None) -> None:
        self.config = config if config is not None else RecorderConfig.model_validate({})
        self.store = store if store is not None else open_store(self.config)
        self._server: EmbeddedServer | None = None
        if self.store.persistent:
            self.store.start_cleanup()
        _register_metrics(self.store, meter_provider)

    def __call__(self, lap: Lap) -> None:
        self.store.add(lap)

    def flush(self, timeout_s: float = 30.0) -> bool:
        return self.store.flush(timeout_s)

    def shutdown(self) -> None:
        """Stop the embedded API, write what is queued and stop the store's threads."""
        if self._server is not None:
            self._server.stop()
            self._server = None
        self.store.close()

    def get(self, ident: str) -> FlightRecord | None:
        return self.store.get(ident)

    def recent(self, n: int = 10, command: str | None = None, status: str | None = None
               ) -> list[FlightRecord]:
        return self.store.recent(n, command, status)

    def serve(self, host: str = "127.0.0.1", port: int = 8765, token: str | None = None
              ) -> EmbeddedServer:
        """Serve this recorder's HTTP API from a daemon thread of this process (``server`` extra).

        The bearer token is ``token`` or else ``$CHRONOGRAPH_API_TOKEN``, as for ``chronograph serve``:
        flight records carry customer ids and must not be open just because the API is embedded."""
        import os

        from ._server import TOKEN_ENV, serve_in_thread

        token = token or os.environ.get(TOKEN_ENV) or None
        self._server = serve_in_thread(self.store, host=host, port=port, token=token)
        return self._server


def _register_metrics(store: FlightStore, mp: MeterProvider | None) -> None:
    def total(attr: str) -> list[tuple[float, dict[str, object]]]:
        return [(float(getattr(store, attr)), {})]

    observe_gauge(mp, "chronograph.recorder.pending", lambda: float(store.pending),
                  "Flight records waiting to be written to the recorder's database", unit="{record}")
    observe_counter(mp, "chronograph.recorder.write_failures", lambda: total("write_failures"),
                    "Failed writes to the recorder's database (the records stay queued and are retried)",
                    unit="{write}")
    observe_counter(mp, "chronograph.recorder.dropped", lambda: total("dropped"),
                    "Flight records not written: more than the queue bound waited, or added after close",
                    unit="{record}")
    observe_counter(mp, "chronograph.recorder.truncated", lambda: total("truncated"),
                    "Flight records cut to the size bounds (long names, event details over budget)",
                    unit="{record}")


def get_recorder() -> FlightRecorder | None:
    """The flight recorder most recently set up by ``install()`` in this process, if any."""
    return _current


def recorder_sink_factory(config: ChronographConfig, meter_provider: MeterProvider | None
                          ) -> tuple[FlightRecorder, bool] | None:
    global _current
    if not config.recorder.enabled:
        return None
    recorder = FlightRecorder(config.recorder, meter_provider=meter_provider)
    with _current_lock:
        _current = recorder
    return recorder, True
