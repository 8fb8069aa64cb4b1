"""Configuration: validation errors naming key and file, sources, env overrides, `config check`."""

from __future__ import annotations

import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from otel_chronograph import ChronographConfig, ConfigError, load_config
from otel_chronograph._cli import main as cli_main


def write(tmp_path: Path, doc: Any, name: str = "chronograph.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc), encoding="utf-8")
    return path


def error_for(tmp_path: Path, body: dict[str, Any]) -> str:
    path = write(tmp_path, {"chronograph": body})
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    message = str(info.value)
    assert str(path) in message, message
    return message


def test_defaults() -> None:
    cfg = load_config(None, environ={})
    assert cfg.enabled is True
    assert (cfg.status.green_ms, cfg.status.yellow_ms, cfg.status.on_error) == (100, 300, "RED")
    assert cfg.billing.tiers == {"free": 0, "pro": 1, "enterprise": 2}
    assert cfg.billing.default_rate == 0 and cfg.billing.default_tier == "free"
    assert cfg.billing.unknown_tier_multiplier == 1
    laps = cfg.laps
    assert (laps.grace_ms, laps.max_pending_traces, laps.max_spans_per_trace) == (0, 10_000, 2_000)
    assert cfg.laps.auto_server_roots is True


def test_the_spec_document_loads(tmp_path: Path) -> None:
    doc = """
chronograph:
  enabled: true
  laps:     {match: [{name: "job *", command: batch}], grace_ms: 0, max_pending_traces: 10000,
             max_spans_per_trace: 2000}
  sectors:  {rules: [{name: storage, match: {attribute: db.system}}, {name: backend, match: {kind: CLIENT}}]}
  status:   {green_ms: 100, yellow_ms: 300, on_error: RED, commands: {"faf score": {green_ms: 50}}}
  display:  {split_times: true, format: text}
  billing:  {enabled: false, tiers: {free: 0, pro: 1, enterprise: 2}, rates: {"faf score": "0.001"},
             default_rate: "0"}
  recorder: {enabled: true, max_records: 1000, persistent: false, path: chronograph.db, retention_hours: 24}
"""
    cfg = load_config(write(tmp_path, doc), environ={})
    assert cfg.billing.rates == {"faf score": Decimal("0.001")}
    assert cfg.status.thresholds("faf score") == (50, 300)
    assert cfg.status.thresholds("other") == (100, 300)
    assert [r.name for r in cfg.sectors.rules] == ["storage", "backend"]
    assert cfg.laps.match[0].command == "batch"
    assert cfg.display.split_times is True


def test_a_dict_with_or_without_the_top_level_key() -> None:
    assert load_config({"chronograph": {"enabled": False}}, environ={}).enabled is False
    assert load_config({"enabled": False}, environ={}).enabled is False
    cfg = ChronographConfig()
    assert load_config(cfg, environ={}) == cfg


def test_rates_are_exact_decimals() -> None:
    cfg = load_config({"billing": {"rates": {"a": 0.001, "b": "0.0000001", "c": 3}}}, environ={})
    assert cfg.billing.rates == {"a": Decimal("0.001"), "b": Decimal("0.0000001"), "c": Decimal(3)}
    assert str(cfg.billing.rates["a"]) == "0.001"  # from the float's repr, not its binary expansion


def test_unknown_key(tmp_path: Path) -> None:
    msg = error_for(tmp_path, {"display": {"split_time": True}})
    assert "chronograph.display.split_time" in msg and "unknown key" in msg
    msg = error_for(tmp_path, {"lapz": {}})
    assert "chronograph.lapz" in msg


def test_wrong_type(tmp_path: Path) -> None:
    msg = error_for(tmp_path, {"laps": {"max_pending_traces": "lots"}})
    assert "chronograph.laps.max_pending_traces" in msg
    msg = error_for(tmp_path, {"display": {"format": "html"}})
    assert "chronograph.display.format" in msg
    msg = error_for(tmp_path, {"sectors": {"rules": [{"name": "x", "match": {"kind": "SERVERR"}}]}})
    assert "chronograph.sectors.rules.0.match.kind" in msg


def test_negative_threshold(tmp_path: Path) -> None:
    msg = error_for(tmp_path, {"status": {"green_ms": -1}})
    assert "chronograph.status.green_ms" in msg
    msg = error_for(tmp_path, {"status": {"commands": {"faf score": {"yellow_ms": -5}}}})
    assert "chronograph.status.commands.faf score.yellow_ms" in msg
    msg = error_for(tmp_path, {"laps": {"grace_ms": -1}})
    assert "chronograph.laps.grace_ms" in msg


def test_non_numeric_rate(tmp_path: Path) -> None:
    msg = error_for(tmp_path, {"billing": {"rates": {"faf score": "cheap"}}})
    assert "chronograph.billing.rates.faf score" in msg
    assert "'cheap'" in msg
    for bad in ("-0.1", "NaN", "Infinity", True):
        msg = error_for(tmp_path, {"billing": {"rates": {"faf score": bad}}})
        assert "chronograph.billing.rates.faf score" in msg
    msg = error_for(tmp_path, {"billing": {"tiers": {"pro": "x"}}})
    assert "chronograph.billing.tiers.pro" in msg
    msg = error_for(tmp_path, {"billing": {"default_rate": "free"}})
    assert "chronograph.billing.default_rate" in msg


def test_green_above_yellow(tmp_path: Path) -> None:
    msg = error_for(tmp_path, {"status": {"green_ms": 500, "yellow_ms": 300}})
    assert "chronograph.status" in msg and "green_ms" in msg and "yellow_ms" in msg
    msg = error_for(tmp_path, {"status": {"commands": {"faf score": {"green_ms": 400}}}})  # yellow 300
    assert "faf score" in msg and "green_ms" in msg


def test_bad_on_error_names_the_plain_key(tmp_path: Path) -> None:
    msg = error_for(tmp_path, {"status": {"on_error": "BLUE"}})
    assert "chronograph.status.on_error: " in msg
    assert "literal[" not in msg  # no pydantic union tags in the key


def test_invalid_rules(tmp_path: Path) -> None:
    msg = error_for(tmp_path, {"sectors": {"rules": [{"name": "x", "match": {}}]}})
    assert "chronograph.sectors.rules.0.match" in msg
    msg = error_for(tmp_path, {"sectors": {"rules": [{"name": "x", "match": {"value": 1}}]}})
    assert "needs exactly one of 'attribute' or 'resource'" in msg


def test_every_error_is_reported_at_once(tmp_path: Path) -> None:
    msg = error_for(tmp_path, {"status": {"green_ms": "x"}, "billing": {"rates": {"a": "y"}}, "bogus": 1})
    for key in ("chronograph.status.green_ms", "chronograph.billing.rates.a", "chronograph.bogus"):
        assert key in msg


def test_not_yaml_missing_file_and_not_a_mapping(tmp_path: Path) -> None:
    bad = write(tmp_path, "chronograph: [unclosed", "bad.yaml")
    with pytest.raises(ConfigError, match=r"bad\.yaml"):
        load_config(bad, environ={})
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        load_config(tmp_path / "missing.yaml", environ={})
    with pytest.raises(ConfigError, match=r"list\.yaml"):
        load_config(write(tmp_path, "- a\n- b\n", "list.yaml"), environ={})
    with pytest.raises(ConfigError, match="chronograph"):
        load_config(write(tmp_path, "chronograph: 5\n", "scalar.yaml"), environ={})
    assert load_config(write(tmp_path, "", "empty.yaml"), environ={}) == ChronographConfig()


def test_config_error_is_a_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


# -- sources -----------------------------------------------------------------------------------------


def test_chronograph_config_env_variable(tmp_path: Path) -> None:
    path = write(tmp_path, {"chronograph": {"status": {"green_ms": 7}}})
    assert load_config(environ={"CHRONOGRAPH_CONFIG": str(path)}).status.green_ms == 7


def test_chronograph_config_wins_over_otel_config_file(tmp_path: Path) -> None:
    ours = write(tmp_path, {"chronograph": {"status": {"green_ms": 7}}})
    block = {"chronograph": {"status": {"green_ms": 9}}}
    otel = write(tmp_path, {"file_format": "0.3", "distribution": block}, "otel.yaml")
    env = {"CHRONOGRAPH_CONFIG": str(ours), "OTEL_CONFIG_FILE": str(otel)}
    assert load_config(environ=env).status.green_ms == 7


def test_otel_config_file_distribution_block(tmp_path: Path) -> None:
    otel = write(tmp_path, {"file_format": "0.3", "tracer_provider": {"processors": []},
                            "distribution": {"chronograph": {"status": {"green_ms": 9},
                                                             "billing": {"rates": {"x": "0.5"}}}}},
                 "otel.yaml")
    cfg = load_config(environ={"OTEL_CONFIG_FILE": str(otel)})
    assert cfg.status.green_ms == 9
    assert cfg.billing.rates == {"x": Decimal("0.5")}


def test_otel_config_file_without_our_block_means_defaults(tmp_path: Path) -> None:
    otel = write(tmp_path, {"file_format": "0.3", "distribution": {"other": {}}}, "otel.yaml")
    assert load_config(environ={"OTEL_CONFIG_FILE": str(otel)}) == ChronographConfig()


def test_otel_config_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    otel = write(tmp_path, {"distribution": {"chronograph": {"status": {"yellow_ms": "slow"}}}}, "otel.yaml")
    with pytest.raises(ConfigError) as info:
        load_config(environ={"OTEL_CONFIG_FILE": str(otel)})
    assert str(otel) in str(info.value)
    assert "chronograph.status.yellow_ms" in str(info.value)


def test_environment_fallback_uses_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, {"chronograph": {"enabled": False}})
    monkeypatch.setenv("CHRONOGRAPH_CONFIG", str(path))
    assert load_config().enabled is False


# -- env overrides ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [("1", True), ("true", True), ("YES", True), (" on ", True),
                                             ("0", False), ("False", False), ("no", False), ("off", False)])
def test_env_bool_overrides(text: str, value: bool) -> None:
    cfg = load_config({"enabled": not value, "display": {"split_times": not value},
                       "billing": {"enabled": not value}},
                      environ={"CHRONOGRAPH_ENABLED": text, "CHRONOGRAPH_SPLIT_TIMES": text,
                               "CHRONOGRAPH_BILLING_ENABLED": text})
    assert (cfg.enabled, cfg.display.split_times, cfg.billing.enabled) == (value, value, value)


def test_env_tier_overrides_default_tier(tmp_path: Path) -> None:
    path = write(tmp_path, {"chronograph": {"billing": {"default_tier": "pro"}}})
    assert load_config(path, environ={"CHRONOGRAPH_TIER": "enterprise"}).billing.default_tier == "enterprise"
    assert load_config(path, environ={"CHRONOGRAPH_TIER": ""}).billing.default_tier == "pro"


def test_env_overrides_apply_to_files_and_the_environment_source(tmp_path: Path) -> None:
    path = write(tmp_path, {"chronograph": {"display": {"split_times": True, "format": "json"}}})
    cfg = load_config(environ={"CHRONOGRAPH_CONFIG": str(path), "CHRONOGRAPH_SPLIT_TIMES": "0"})
    assert cfg.display.split_times is False
    assert cfg.display.format == "json"  # the rest of the block kept


def test_bad_env_bool_names_the_variable_and_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config({}, environ={"CHRONOGRAPH_ENABLED": "maybe"})
    assert "CHRONOGRAPH_ENABLED" in str(info.value) and "'maybe'" in str(info.value)
    assert "chronograph.enabled" in str(info.value)
    with pytest.raises(ConfigError, match=r"CHRONOGRAPH_SPLIT_TIMES \(chronograph\.display\.split_times\)"):
        load_config({}, environ={"CHRONOGRAPH_SPLIT_TIMES": "2"})


def test_secrets_are_not_accepted_from_the_file(tmp_path: Path) -> None:
    msg = error_for(tmp_path, {"billing": {"meter": {"api_key": "sk_test_123"}}})
    assert "chronograph.billing.meter.api_key" in msg and "unknown key" in msg


# -- chronograph config check ---------------------------------------------------------------------------


def test_cli_config_check_ok(tmp_path: Path) -> None:
    path = write(tmp_path, {"chronograph": {"billing": {"enabled": True, "rates": {"faf score": "0.001"}}}})
    result = CliRunner().invoke(cli_main, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert str(path) in result.output and "ok" in result.output


def test_cli_config_check_bad(tmp_path: Path) -> None:
    path = write(tmp_path, {"chronograph": {"billing": {"rates": {"faf score": "cheap"}}}})
    result = CliRunner().invoke(cli_main, ["config", "check", str(path)])
    assert result.exit_code == 1
    assert "chronograph.billing.rates.faf score" in result.output
    assert str(path) in result.output


def test_cli_config_check_ignores_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHRONOGRAPH_ENABLED", "maybe")
    path = write(tmp_path, {"chronograph": {}})
    assert CliRunner().invoke(cli_main, ["config", "check", str(path)]).exit_code == 0


def test_cli_console_script(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "chronograph"
    good = write(tmp_path, {"chronograph": {"status": {"green_ms": 10}}}, "good.yaml")
    bad = write(tmp_path, {"chronograph": {"status": {"green_ms": -10}}}, "bad.yaml")
    ok = subprocess.run([str(exe), "config", "check", str(good)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    fail = subprocess.run([str(exe), "config", "check", str(bad)], capture_output=True, text=True, timeout=60)
    assert fail.returncode == 1
    assert str(bad) in fail.stderr and "chronograph.status.green_ms" in fail.stderr
    assert "Traceback" not in fail.stderr
