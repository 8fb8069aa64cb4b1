"""Issue 9 item 7: hostile configuration files — alias bombs, huge files, huge values — give a short
error quickly, never minutes of CPU, gigabytes of memory or a 33 MB message. Plus a fuzz test: any
document or byte string gives a valid config or a ConfigError, nothing else."""

from __future__ import annotations

import contextlib
import string
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_chronograph import ConfigError, load_config


def bomb(levels: int) -> str:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, levels):
        refs = ", ".join(f"*a{i - 1}" for _ in range(10))
        lines.append(f"a{i}: &a{i} [{refs}]")
    # Anchors first (an alias must follow its anchor), then the key that references the last one.
    return "\n".join(lines) + f"\nchronograph:\n  sectors:\n    rules: *a{levels - 1}\n"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("levels", [6, 9])
def test_alias_bombs_are_refused_quickly_with_a_short_message(tmp_path: Path, levels: int) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(levels))
    assert path.stat().st_size < 1000
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert "alias" in str(err.value) and len(str(err.value)) < 500


@pytest.mark.timeout(20)
def test_a_huge_file_is_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("w") as f:
        f.write("chronograph:\n  billing:\n    rates:\n")
        for i in range(2_000_000):
            f.write(f"      cmd{i}: '0.001'\n")
    with pytest.raises(ConfigError, match="larger than"):
        load_config(path, environ={})


def test_echoed_values_are_truncated(tmp_path: Path) -> None:
    path = tmp_path / "long.yaml"
    path.write_text("chronograph:\n  billing:\n    default_rate: '" + "9" * 5000 + "x'\n"
                    "  laps: {decision_wait: '" + "1" * 5000 + "q'}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert len(str(err.value)) < 800, len(str(err.value))
    assert "chronograph.billing.default_rate" in str(err.value)


def test_a_yaml_error_on_a_huge_line_is_short(tmp_path: Path) -> None:
    path = tmp_path / "line.yaml"
    path.write_text("chronograph: {enabled: true, x: [" + "1," * 100_000 + "\n")
    with pytest.raises(ConfigError) as err:
        load_config(path, environ={})
    assert len(str(err.value)) < 800


yaml_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True),
                         st.text(max_size=20))
yaml_docs = st.recursive(yaml_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["chronograph", "laps", "sectors", "rules", "status", "billing",
                                     "recorder", "display", "match", "name", "green_ms", "enabled",
                                     "identity", "scope", "rates", "x"]) | st.text(max_size=8),
                    inner, max_size=4)), max_leaves=20)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(yaml_docs)
def test_fuzz_documents_give_a_config_or_a_config_error(doc: object) -> None:
    with contextlib.suppress(ConfigError):
        load_config(doc if isinstance(doc, dict) else {"chronograph": doc}, environ={})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300) | st.text(alphabet=string.printable + "&*!|>{}[]:-#'\"\xe9", max_size=300)
       .map(str.encode))
def test_fuzz_files_give_a_config_or_a_config_error(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "fuzz.yaml"
    path.write_bytes(data)
    try:
        load_config(path, environ={})
    except ConfigError as exc:
        assert len(str(exc)) < 2000


def test_config_check_never_shows_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb(9))
    out = subprocess.run([str(Path(sys.executable).parent / "chronograph"), "config", "check", str(path)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "Traceback" not in out.stderr and len(out.stderr) < 1000
