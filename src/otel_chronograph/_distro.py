"""Auto-instrumentation: ``OTEL_PYTHON_DISTRO=chronograph OTEL_PYTHON_CONFIGURATOR=chronograph``.

The configurator lets the SDK build its providers and exporters as usual (``--traces_exporter``,
``--metrics_exporter``), but hands the exporting processors to one chronograph processor, so the lap
spans reach every exporter annotated. With no trace exporter at all the processor is still added (laps
are derived, metrics and the display still work).
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, NoReturn

from opentelemetry import trace
from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _initialize_components, _OTelSDKConfigurator
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from ._config import ConfigError, load_config
from ._exit import flush_on_sigterm
from ._setup import make_processor
from .sources._processor import ChronographProcessor

__all__ = ["ChronographConfigurator", "ChronographDistro"]

_log = logging.getLogger("otel_chronograph")


class _Noop(SpanProcessor):
    """Stands in the provider for the 2nd+ exporter: the chronograph processor already forwards to it."""


class ChronographDistro(BaseDistro):  # type: ignore[misc]
    """Same defaults as ``opentelemetry-distro`` (OTLP for traces and metrics), nothing more."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault("OTEL_TRACES_EXPORTER", "otlp")
        os.environ.setdefault("OTEL_METRICS_EXPORTER", "otlp")
        os.environ.setdefault("OTEL_LOGS_EXPORTER", "none")


class ChronographConfigurator(_OTelSDKConfigurator):
    """SDK configurator that installs the chronograph processor in front of the exporting processors."""

    processor: ChronographProcessor | None = None

    def _configure(self, **kwargs: Any) -> None:
        try:  # one handler for every path: a bad config or a stage that cannot start stops start-up
            self._configure_chronograph(**kwargs)
        except ConfigError as exc:
            _stop(exc)

    def _configure_chronograph(self, **kwargs: Any) -> None:
        config = load_config()  # fail fast, before anything starts, with the key and file named
        if not config.enabled:
            super()._configure(**kwargs)  # type: ignore[no-untyped-call]
            return
        if os.environ.get("OTEL_CONFIG_FILE") and _declarative_available():
            super()._configure(**kwargs)  # type: ignore[no-untyped-call]
            self.processor = _rewrap_declarative(config)
            return
        exporting: list[SpanProcessor] = []

        def export_processor(exporter: SpanExporter) -> SpanProcessor:
            # Keep the exporter's processor for ourselves; the provider gets a placeholder.
            exporting.append(BatchSpanProcessor(exporter))
            return _Noop()

        kwargs.setdefault("export_span_processor", export_processor)
        # Without the declarative-config package, OTEL_CONFIG_FILE only carries our own block: the SDK
        # is configured from the usual OTEL_* variables instead of failing to start.
        _initialize_components(**kwargs)
        provider = trace.get_tracer_provider()
        if not isinstance(provider, TracerProvider):  # pragma: no cover - the SDK always sets one
            _log.warning("chronograph: no SDK TracerProvider after configuration; laps are off")
            return
        # Built after the SDK set the MeterProvider, so instruments bind to it directly.
        self.processor = make_processor(config, exporting, None)
        provider.add_span_processor(self.processor)
        flush_on_sigterm(_shutdown_providers)
        from .exec._child import join_parent_trace

        join_parent_trace()  # started by `chronograph exec`: its spans join the exec lap


def _shutdown_providers() -> None:
    """What the SDK's atexit hooks would have done: traces (laps derived, exporters flushed), then
    metrics (the laps' points included)."""
    from opentelemetry import metrics

    for provider in (trace.get_tracer_provider(), metrics.get_meter_provider()):
        shutdown = getattr(provider, "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception:  # pragma: no cover - one provider failing must not stop the other
                _log.warning("chronograph: a provider failed to shut down on SIGTERM", exc_info=True)


def _stop(exc: ConfigError) -> NoReturn:
    """Running on without the configured processor would silently lose laps and usage (and, once the
    exporting processors are ours, every span): stop with the message alone, exit 2 —
    opentelemetry-instrument would log a traceback and go on. SystemExit inside sitecustomize is a
    fatal interpreter error with a traceback; the application has not started, so a plain exit loses
    nothing."""
    sys.stderr.write(f"otel-chronograph: {exc}\n")
    sys.stderr.flush()
    os._exit(2)


def _declarative_available() -> bool:
    try:
        import opentelemetry.configuration  # noqa: F401
    except ImportError:
        _log.warning("chronograph: OTEL_CONFIG_FILE is set but opentelemetry-configuration is not "
                     "installed; configuring the SDK from OTEL_* variables (the distribution.chronograph "
                     "block is still read)")
        return False
    return True


def _rewrap_declarative(config: Any) -> ChronographProcessor | None:
    """With declarative config the SDK builds the processors itself: put ours in front of them."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        return None
    active = getattr(provider, "_active_span_processor", None)
    existing = tuple(getattr(active, "_span_processors", ()))
    processor = make_processor(config, list(existing), None)
    if active is not None and hasattr(active, "_span_processors"):
        active._span_processors = (processor,)
    else:  # pragma: no cover - SDK internals changed: derive laps, annotation reaches no exporter
        _log.warning("chronograph: cannot wrap the declarative config's processors")
        provider.add_span_processor(processor)
    return processor
