"""Run under ``opentelemetry-instrument`` by test_metrics_aggregate: laps through the global providers
the chronograph configurator set up, then a normal exit (the exit-time shutdown exports the metrics).

Usage: ``metrics_app.py LAPS``. Prints whether each LapMetrics aggregates in the process.
"""

from __future__ import annotations

import gc
import sys

from opentelemetry import trace

from otel_chronograph._metrics import LapMetrics


def main() -> None:
    laps = int(sys.argv[1])
    tracer = trace.get_tracer("metrics-app")
    for i in range(laps):
        command = "faf score" if i % 3 else "faf load"
        with tracer.start_as_current_span(command, attributes={"chronograph.lap": True,
                                                               "chronograph.command": command}):
            for name in ("init", "load"):
                with tracer.start_as_current_span(name, attributes={"chronograph.sector": name}):
                    pass
    sinks = [o for o in gc.get_objects() if isinstance(o, LapMetrics)]
    print("aggregated", ",".join(str(s.aggregated) for s in sinks), flush=True)


if __name__ == "__main__":
    main()
