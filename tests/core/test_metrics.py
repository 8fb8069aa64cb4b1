"""The metrics sink on its own: instruments, attributes, exact running cost totals."""

from __future__ import annotations

from decimal import Decimal

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from otel_chronograph._metrics import METER_NAME, LapMetrics

from .helpers import ROOT_ID, deriver, root, sec


def collect(reader: InMemoryMetricReader) -> dict[str, list]:  # type: ignore[type-arg]
    out: dict[str, list] = {}  # type: ignore[type-arg]
    data = reader.get_metrics_data()
    for rm in data.resource_metrics:
        for sm in rm.scope_metrics:
            assert sm.scope.name == METER_NAME
            for metric in sm.metrics:
                out[metric.name] = list(metric.data.data_points)
                if metric.name.endswith(".duration"):
                    assert metric.unit == "ms"
    return out


def test_lap_sector_and_cost_instruments() -> None:
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    sink = LapMetrics(mp)
    d = deriver({"billing": {"rates": {"faf score": "0.1"}}})
    for _ in range(3):
        sink(d.derive(root(0, 50, attributes={"chronograph.tier": "pro"}),
                      [sec("init", 1, ROOT_ID, 0, 10), sec("load", 2, ROOT_ID, 10, 30)]))
    sink(d.derive(root(0, 500, command="other", attributes={"chronograph.tier": "enterprise"}), []))
    m = collect(reader)
    laps = {(p.attributes["chronograph.command"], p.attributes["chronograph.status"],
             p.attributes["chronograph.tier"]): (p.count, p.sum) for p in m["chronograph.lap.duration"]}
    assert laps == {("faf score", "GREEN", "pro"): (3, 150.0), ("other", "RED", "enterprise"): (1, 500.0)}
    sectors = {p.attributes["chronograph.sector"]: (p.count, p.sum) for p in m["chronograph.sector.duration"]}
    assert sectors == {"init": (3, 30.0), "load": (3, 60.0)}
    assert all(set(p.attributes) == {"chronograph.command", "chronograph.sector"}
               for p in m["chronograph.sector.duration"])
    cost = {(p.attributes["chronograph.command"], p.attributes["chronograph.tier"]): p.value
            for p in m["chronograph.cost"]}
    assert cost == {("faf score", "pro"): 0.3, ("other", "enterprise"): 0.0}  # 0.1*3 summed exactly
    assert 0.1 + 0.1 + 0.1 != 0.3 and float(Decimal("0.1") * 3) == 0.3  # (floats would not)
    assert sink.aggregated  # SDK provider, no views: in-process aggregation
    mp.shutdown()


def test_cost_counter_is_cumulative_across_collections() -> None:
    reader = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[reader])
    sink = LapMetrics(mp)
    d = deriver({"billing": {"rates": {"c": "0.001"}}})
    lap = d.derive(root(0, 1, command="c", attributes={"chronograph.tier": "pro"}), [])
    sink(lap)
    assert [p.value for p in collect(reader)["chronograph.cost"]] == [0.001]
    sink(lap)
    assert [p.value for p in collect(reader)["chronograph.cost"]] == [0.002]
    mp.shutdown()
