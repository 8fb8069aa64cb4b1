"""Every Collector configuration shipped in collector-config/ passes the real Collector's `validate`.

collector-config/chronograph-*.yaml are configurations of `chronograph gateway` (the Collector's
shape, but its own components): they are validated by `chronograph gateway validate`, not here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import peers
import pytest

CONFIGS = sorted(
    p for p in peers.COLLECTOR_CONFIG_DIR.glob("*.y*ml") if not p.name.startswith("chronograph-")
)


def test_there_are_configs() -> None:
    names = {p.name for p in CONFIGS}
    assert {"gateway.yaml", "file-export.yaml", "loadbalancing.yaml", "groupbytrace.yaml"} <= names, names


@pytest.mark.e2e
@pytest.mark.parametrize("config", CONFIGS, ids=[p.name for p in CONFIGS])
def test_validate(config: Path, collector_bin: Path) -> None:
    result = peers.validate_collector_config(config)
    assert result.returncode == 0, (
        f"{collector_bin} validate --config {config} exited {result.returncode}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    )


@pytest.mark.e2e
def test_manifest_lists_exactly_the_components_used(collector_bin: Path) -> None:
    """peers/otelcol-builder.yaml builds what the configs use, and nothing they don't."""
    import yaml

    used: set[tuple[str, str]] = set()
    for config in CONFIGS:
        doc = yaml.safe_load(config.read_text())
        for kind in ("receivers", "processors", "exporters", "connectors", "extensions"):
            for name in doc.get(kind) or {}:
                used.add((kind, name.split("/", 1)[0]))
    out = peers.subprocess.run(
        [str(collector_bin), "components"], capture_output=True, text=True, check=True
    ).stdout
    comps = yaml.safe_load(out)
    built: set[tuple[str, str]] = set()
    for kind in ("receivers", "processors", "exporters", "connectors", "extensions"):
        for entry in comps.get(kind) or []:
            built.add((kind, entry["name"]))
    assert used <= built, f"used but not built: {sorted(used - built)}"
    assert built <= used, f"built but unused (remove from peers/otelcol-builder.yaml): {sorted(built - used)}"


@pytest.mark.e2e
def test_file_export_writes_otlp_json(tmp_path: Path, collector_bin: Path) -> None:
    """file-export.yaml really writes OTLP/JSON lines for traces and metrics."""
    import json

    from otlp_push import ChronographTelemetry

    collector = peers.start_collector(tmp_path, "file-export.yaml")
    try:
        telemetry = ChronographTelemetry(collector.otlp_grpc_endpoint, service_name="file-export-check")
        trace_id = telemetry.lap_trace()
        telemetry.record_laps(1)
        telemetry.flush()
        export = tmp_path / "otel-export"

        def written() -> bool:
            traces = export / "traces.jsonl"
            metrics = export / "metrics.jsonl"
            return (
                traces.exists()
                and trace_id in traces.read_text().lower()
                and metrics.exists()
                and "chronograph.lap.duration" in metrics.read_text()
            )

        peers.wait_until(written, 30, "traces.jsonl and metrics.jsonl", on_poll=collector.check_alive)
        first = (export / "traces.jsonl").read_text().splitlines()[0]
        assert "resourceSpans" in json.loads(first)
        telemetry.shutdown()
    finally:
        collector.stop()


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("gateways", "valid"),
    [
        ("10.0.0.1:5317,10.0.0.2:5317", True),  # comma-separated
        ("[gateway-1:5317, gateway-2:5317]", True),  # a YAML list
        ("", False),  # the static resolver needs at least one gateway
    ],
    ids=["comma-separated", "yaml-list", "empty"],
)
def test_loadbalancing_gateways_from_the_environment(gateways: str, valid: bool, collector_bin: Path) -> None:
    result = subprocess.run(
        [str(collector_bin), "validate", "--config", str(peers.COLLECTOR_CONFIG_DIR / "loadbalancing.yaml")],
        capture_output=True, text=True, timeout=120, check=False,
        env={**os.environ, "CHRONOGRAPH_GATEWAYS": gateways},
    )
    assert (result.returncode == 0) == valid, result.stderr
    if not valid:
        assert "no endpoints specified for the static resolver" in result.stderr


def test_loadbalancing_routes_by_trace_with_retrying_queues() -> None:
    """The settings the gateway topology relies on (see the comments in loadbalancing.yaml)."""
    import yaml

    doc = yaml.safe_load((peers.COLLECTOR_CONFIG_DIR / "loadbalancing.yaml").read_text())
    lb = doc["exporters"]["load_balancing"]
    assert lb["routing_key"] == "traceID"
    assert "static" in lb["resolver"]
    otlp = lb["protocol"]["otlp"]
    assert otlp["sending_queue"]["enabled"] is True
    assert otlp["retry_on_failure"]["enabled"] is True
    traces = doc["service"]["pipelines"]["traces"]
    assert traces["exporters"] == ["load_balancing"]
    assert "batch" not in traces["processors"], "a batch processor would hide refusals from the apps"
    assert "prometheus" in doc["service"]["pipelines"]["metrics"]["exporters"]
