"""Every Collector configuration shipped in collector-config/ passes the real Collector's `validate`."""

from __future__ import annotations

from pathlib import Path

import peers
import pytest

CONFIGS = sorted(p for p in peers.COLLECTOR_CONFIG_DIR.glob("*.y*ml"))


def test_there_are_configs() -> None:
    names = {p.name for p in CONFIGS}
    assert {"gateway.yaml", "file-export.yaml"} <= names, names


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
