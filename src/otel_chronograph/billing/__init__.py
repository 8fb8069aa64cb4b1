"""Usage metering: completed laps billed exactly once to Stripe meter events through a durable outbox.

``install()`` builds the billing stage (``billing_sink_factory``) only when ``chronograph.billing.enabled``
(or ``CHRONOGRAPH_BILLING_ENABLED``) is on; ``stripe`` is imported only then. Same shape as ``recorder``:
``_sink`` (the lap sink), ``_outbox`` (the durable store), ``_commands`` (the CLI).
"""

from __future__ import annotations

from collections.abc import Callable

from opentelemetry.metrics import MeterProvider

from .._config import ChronographConfig
from .._lap import Lap
from ._outbox import Outbox, OutboxStatus, UsageRecord
from ._sender import Sender, StripeTransport
from ._sink import BillingSink, usage_record

__all__ = ["BillingSink", "Outbox", "OutboxStatus", "Sender", "StripeTransport", "UsageRecord",
           "billing_sink_factory", "usage_record"]


def billing_sink_factory(config: ChronographConfig, meter_provider: MeterProvider | None
                         ) -> tuple[Callable[[Lap], None], bool] | None:
    """Non-deferred: the outbox row is committed before ``lap.telemetry`` is handed back."""
    if not config.billing.enabled:
        return None
    return BillingSink(config, meter_provider), False
