"""Usage metering: completed laps billed exactly once to Stripe meter events through a durable outbox.

``install()`` builds the billing stage (``billing_sink_factory``) only when ``chronograph.billing.enabled``
(or ``CHRONOGRAPH_BILLING_ENABLED``) is on. ``stripe`` (~0.35 s of imports) is imported only by a process
that delivers: billing on, ``delivery: in_process`` and a key; or ``chronograph billing flush|deliver``.
Same shape as ``recorder``: ``_sink`` (the lap sink), ``_outbox`` (the durable store), ``_commands`` (the
CLI group).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from opentelemetry.metrics import MeterProvider

from .._config import ChronographConfig
from .._lap import Lap
from ._outbox import Outbox, OutboxStatus, UsageRecord
from ._sender import Sender
from ._sink import BillingSink, usage_record

if TYPE_CHECKING:
    from ._stripe import StripeTransport

__all__ = ["BillingSink", "Outbox", "OutboxStatus", "Sender", "StripeTransport", "UsageRecord",
           "billing_sink_factory", "usage_record"]


def billing_sink_factory(config: ChronographConfig, meter_provider: MeterProvider | None
                         ) -> tuple[Callable[[Lap], None], bool] | None:
    """Non-deferred: the outbox row is committed before ``lap.telemetry`` is handed back."""
    if not config.billing.enabled:
        return None
    return BillingSink(config, meter_provider), False


def __getattr__(name: str) -> Any:
    if name == "StripeTransport":  # imports stripe: only when asked for
        from ._stripe import StripeTransport

        return StripeTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
