"""``chronograph gateway validate``: the Collector-shaped file, errors naming the dotted key, unknown
components listed with the valid ones, ``${env:...}`` expansion, exit statuses."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from otel_chronograph._cli import main
from otel_chronograph._config import ConfigError
from otel_chronograph.gateway import load_gateway_config
from otel_chronograph.gateway._config import expand_env

from .helpers import CHRONOGRAPH

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "collector-config" / "chronograph-gateway.yaml"

GOOD: dict[str, Any] = {
    "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": "127.0.0.1:5317"},
                                         "http": {"endpoint": "127.0.0.1:5318"}}}},
    "processors": {"chronograph": {"laps": {"decision_wait": "2s", "max_pending_traces": 50000}}},
    "exporters": {"otlp_grpc": {"endpoint": "127.0.0.1:14317", "tls": {"insecure": True}}},
    "service": {"pipelines": {"traces": {"receivers": ["otlp"], "processors": ["chronograph"],
                                         "exporters": ["otlp_grpc"]},
                              "metrics": {"exporters": ["otlp_grpc"]}},
                "telemetry": {"metrics": {"endpoint": "127.0.0.1:8899"}}},
}


def write(tmp_path: Path, doc: Any, name: str = "gw.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc))
    return path


def errors_of(tmp_path: Path, doc: Any, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_gateway_config(write(tmp_path, doc), environ=environ or {})
    lines = str(info.value).splitlines()
    assert lines[0] == "invalid gateway configuration:"
    return [line.strip() for line in lines[1:]]


def changed(path: str, value: Any) -> dict[str, Any]:
    """GOOD with the dotted ``path`` set to ``value`` (None deletes it)."""
    doc = yaml.safe_load(yaml.safe_dump(GOOD))
    node = doc
    *parents, last = path.split(".")
    for part in parents:
        node = node[part]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return doc


def test_the_spec_example_is_valid_and_defaults_to_trace_scope(tmp_path: Path) -> None:
    cfg = load_gateway_config(write(tmp_path, GOOD), environ={})
    assert cfg.chronograph.laps.scope == "trace"
    assert cfg.chronograph.laps.decision_wait == 2.0
    assert [p.endpoint for p in cfg.grpc_endpoints()] == ["127.0.0.1:5317"]
    assert list(cfg.exporters) == ["otlp_grpc"] and list(cfg.metrics_exporters) == ["otlp_grpc"]


def test_the_shipped_file_is_valid_and_binds_localhost_by_default(tmp_path: Path) -> None:
    cfg = load_gateway_config(SHIPPED, environ={})
    assert [p.endpoint for p in cfg.grpc_endpoints()] == ["127.0.0.1:5317"]
    assert [p.endpoint for p in cfg.http_endpoints()] == ["127.0.0.1:5318"]
    assert cfg.telemetry.metrics.endpoint == "127.0.0.1:8899"
    in_container = load_gateway_config(SHIPPED, environ={"CHRONOGRAPH_GATEWAY_GRPC_ENDPOINT": "0.0.0.0:4317"})
    assert [p.endpoint for p in in_container.grpc_endpoints()] == ["0.0.0.0:4317"]


def test_explicit_service_scope_is_kept(tmp_path: Path) -> None:
    doc = changed("processors.chronograph", {"laps": {"scope": "service"}})
    assert load_gateway_config(write(tmp_path, doc), environ={}).chronograph.laps.scope == "service"


@pytest.mark.parametrize(("path", "value", "message"), [
    ("processors.chronograph.laps.scope", "everything", "Input should be 'service' or 'trace'"),
    ("processors.chronograph.laps.decision_wait", "soon", "must be a duration"),
    ("exporters.otlp_grpc.tls.insecure", "maybe", "Input should be a valid boolean"),
    ("exporters.otlp_grpc.compresion", "gzip", "unknown key"),
    ("exporters.otlp_grpc.endpoint", None, "Field required"),
    ("receivers.otlp.protocols.grpc.endpoint", "5317", "must be host:port"),
    ("receivers.otlp.protocols.htttp", {}, "unknown key"),
    ("receivers.otlp.protocols", {}, "must define at least one of grpc, http"),
    ("service.telemetry.metrics.endpoint", "nowhere", "must be host:port"),
    ("service.pipelines.logs", {"exporters": ["otlp_grpc"]}, "unknown key"),
    ("service.pipelines.traces.processors", [], "must name the chronograph"),
    ("service.pipelines.traces.exporters", ["otlp_grpc", "jaeger"],
     'references exporter "jaeger" which is not configured'),
    ("service.pipelines.traces.receivers", ["otlp", "otlp"], 'references receiver "otlp" multiple times'),
    ("extensions", {"health_check": {}}, "unknown key"),
])
def test_an_error_names_the_dotted_key(tmp_path: Path, path: str, value: Any, message: str) -> None:
    lines = errors_of(tmp_path, changed(path, value))
    origin = str(tmp_path / "gw.yaml")
    assert any(line.startswith(f"{origin}: {path}: {message}") for line in lines), lines


@pytest.mark.parametrize(("kind", "component", "valid"), [
    ("receivers", "zipkin", "otlp"),
    ("processors", "batch", "chronograph"),
    ("exporters", "kafka/out", "debug, file, nop, otlp_grpc, otlp_http"),
])
def test_an_unknown_component_lists_the_valid_ones(tmp_path: Path, kind: str, component: str,
                                                    valid: str) -> None:
    doc = changed(f"{kind}.{component}", {})
    lines = errors_of(tmp_path, doc)
    written = component.split("/")[0]
    assert any(f'{kind}.{component}: unknown type "{written}" for id "{component}" (valid values: {valid})'
               in line for line in lines), lines


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    doc = changed("exporters.otlp_grpc.tls.insecure", "maybe")
    doc["exporters"]["zipkin"] = {}
    doc["processors"]["chronograph"]["status"] = {"green_ms": -1}
    lines = errors_of(tmp_path, doc)
    assert len(lines) == 3, lines


def test_metrics_pipeline_refuses_the_file_exporter(tmp_path: Path) -> None:
    doc = changed("exporters.file", {"path": str(tmp_path / "out.jsonl")})
    doc["service"]["pipelines"]["metrics"]["exporters"] = ["file"]
    lines = errors_of(tmp_path, doc)
    assert any('service.pipelines.metrics.exporters: exporter "file" (file) does not export metrics' in line
               for line in lines), lines


def test_deprecated_aliases_work_like_the_collector(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    doc = changed("exporters", {"otlp": {"endpoint": "127.0.0.1:1", "tls": {"insecure": True}},
                                "otlphttp/b": {"endpoint": "http://127.0.0.1:2"}})
    doc["service"]["pipelines"]["traces"]["exporters"] = ["otlp", "otlphttp/b"]
    del doc["service"]["pipelines"]["metrics"]
    cfg = load_gateway_config(write(tmp_path, doc), environ={})
    assert [t for t, _ in cfg.exporters.values()] == ["otlp_grpc", "otlp_http"]
    assert 'the "otlp" alias is deprecated; use "otlp_grpc" instead' in caplog.text


def test_the_chronograph_environment_overrides_apply(tmp_path: Path) -> None:
    cfg = load_gateway_config(write(tmp_path, GOOD), environ={"CHRONOGRAPH_SPLIT_TIMES": "true"})
    assert cfg.chronograph.display.split_times is True
    lines = errors_of(tmp_path, GOOD, environ={"CHRONOGRAPH_ENABLED": "perhaps"})
    assert any("CHRONOGRAPH_ENABLED" in line for line in lines), lines


def test_env_expansion_follows_the_collector() -> None:
    env = {"PORT": "4317", "HOST": "0.0.0.0", "EMPTY": ""}
    assert expand_env("${env:HOST}:${env:PORT}", env) == "0.0.0.0:4317"
    assert expand_env("${env:PORT}", env) == 4317  # a lone reference takes its YAML type
    assert expand_env("${env:MISSING:-127.0.0.1:5317}", env) == "127.0.0.1:5317"
    assert expand_env("${env:EMPTY:-fallback}", env) == "fallback"
    assert expand_env("${HOST}", env) == "0.0.0.0"
    assert expand_env("cost $$5", env) == "cost $5"
    assert expand_env({"a": ["${env:MISSING}"]}, env) == {"a": [""]}  # unset: empty, as the Collector


def test_not_yaml_empty_and_not_a_mapping(tmp_path: Path) -> None:
    for text, expected in (("receivers: [", "not valid YAML"), ("", "empty configuration"),
                           ("- a\n- b\n", "expected a mapping")):
        with pytest.raises(ConfigError, match=expected):
            load_gateway_config(write(tmp_path, text), environ={})


def test_cli_validate_exit_statuses(tmp_path: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(main, ["gateway", "validate", "--config", str(write(tmp_path, GOOD))])
    assert ok.exit_code == 0, ok.output
    assert "ok (grpc 127.0.0.1:5317, http 127.0.0.1:5318" in ok.output
    bad = runner.invoke(main, ["gateway", "validate", "--config",
                               str(write(tmp_path, changed("exporters.zipkin", {}), "bad.yaml"))])
    assert bad.exit_code == 1
    assert 'exporters.zipkin: unknown type "zipkin"' in bad.output and "Traceback" not in bad.output
    usage = runner.invoke(main, ["gateway", "validate"])
    assert usage.exit_code == 2
    missing = runner.invoke(main, ["gateway"])
    assert missing.exit_code == 2 and "--config FILE is required" in missing.output


def test_the_real_command_validates_the_shipped_file() -> None:
    result = subprocess.run([CHRONOGRAPH, "gateway", "validate", "--config", str(SHIPPED)],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{SHIPPED}: ok (grpc 127.0.0.1:5317")
