"""Usage metering: completed laps billed exactly once to Stripe meter events through a durable outbox.

Importing this package registers the billing sink factory with ``install()``; the factory builds a sink
only when ``chronograph.billing.enabled`` (or ``CHRONOGRAPH_BILLING_ENABLED``) is on.
"""

from __future__ import annotations

from opentelemetry.metrics import MeterProvider

from .._config import ChronographConfig
from .._setup import LapCallback, register_sink_factory
from ._outbox import Outbox, OutboxStatus, UsageRecord
from ._sender import Sender, StripeTransport
from ._sink import BillingSink, usage_record

__all__ = ["BillingSink", "Outbox", "OutboxStatus", "Sender", "StripeTransport", "UsageRecord",
           "billing_sink_factory", "usage_record"]


def billing_sink_factory(config: ChronographConfig, meter_provider: MeterProvider | None
                         ) -> tuple[LapCallback, bool] | None:
    """Non-deferred: the outbox row is committed before ``lap.telemetry`` is handed back."""
    if not config.billing.enabled:
        return None
    return BillingSink(config, meter_provider), False


register_sink_factory(billing_sink_factory)
