"""The gateway (SPEC.md Part 2, "Gateway"): laps for whole multi-service traces out of process, on OTLP.

``chronograph gateway --config FILE`` receives OTLP/gRPC and OTLP/HTTP, derives one lap per trace with
the same engine the in-process processor uses, and exports every span onward with lap roots annotated;
several gateways scale out behind the Collector's ``loadbalancing`` exporter (``routing_key: traceID``).
"""

from __future__ import annotations

from ._config import GatewayConfig, load_gateway_config
from ._gateway import Gateway

__all__ = ["Gateway", "GatewayConfig", "load_gateway_config"]
