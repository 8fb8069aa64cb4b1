"""Argv templates and argument rules (hypothesis): a value either lands verbatim in its place or is refused;
NUL bytes, over-long values, '..' paths and option-like values never pass."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otel_chronograph import ConfigError, load_config
from otel_chronograph._config import ExecArg
from otel_chronograph.exec._template import ArgumentError, check_argument, fill, placeholder_names

TEXT = ExecArg(max_length=50)
PATH = ExecArg(max_length=64, path=True, pattern=r"[a-z0-9_./-]+")
ARGV = ("prog", "--name={text}", "{path}", "literal {{text}} and {not a placeholder}", "{text}")


def test_placeholders_in_order_of_first_appearance() -> None:
    assert placeholder_names(ARGV) == ["text", "path"]
    assert placeholder_names(["a", "{{x}}", "{1x}", "{ x}"]) == []


def test_fill_substitutes_and_unescapes() -> None:
    argv = fill(ARGV, {"text": TEXT, "path": PATH}, ["hi there", "docs/readme.md"])
    assert argv == ["prog", "--name=hi there", "docs/readme.md", "literal {text} and {not a placeholder}",
                    "hi there"]


@given(st.text(max_size=80))
def test_a_value_is_placed_verbatim_or_refused(value: str) -> None:
    try:
        argv = fill(["prog", "{text}", "x{text}y"], {"text": TEXT}, [value])
    except ArgumentError:
        assert ("\x00" in value or len(value) > 50 or value.startswith("-")
                or any(0xD800 <= ord(c) <= 0xDFFF for c in value))
        return
    assert argv == ["prog", value, f"x{value}y"]


@given(st.lists(st.sampled_from(["a", "b", "..", ".", "", "x.y", "..."]), min_size=1, max_size=6),
       st.booleans())
def test_paths_never_climb_out(parts: list[str], absolute: bool) -> None:
    value = ("/" if absolute else "") + "/".join(parts)
    try:
        check_argument("path", value, PATH)
    except ArgumentError:
        return
    assert not value.startswith("/") and ".." not in value.split("/")


@pytest.mark.parametrize("value", ["a\nb", "abc\n", "ABC"])
def test_pattern_is_a_full_match(value: str) -> None:
    with pytest.raises(ArgumentError, match="does not match"):
        check_argument("path", value, PATH)


def test_wrong_count_and_types() -> None:
    with pytest.raises(ArgumentError, match="expected 2 argument"):
        fill(ARGV, {"text": TEXT, "path": PATH}, ["x"])
    with pytest.raises(ArgumentError, match="must be a string"):
        fill(ARGV, {"text": TEXT, "path": PATH}, [["x"], "y"])
    assert check_argument("n", "-5", ExecArg(leading_dash=True)) == "-5"


@pytest.mark.parametrize(("exec_section", "key"), [
    ({"commands": {"x": {"argv": ["{p}"], "args": {"p": {}}, "tiers": ["free"]}}},
     "chronograph.exec.commands.x"),
    ({"commands": {"x": {"argv": ["a", "{q}"], "tiers": ["free"]}}}, "placeholder {q} has no rule"),
    ({"commands": {"x": {"argv": ["a"], "args": {"p": {}}, "tiers": ["free"]}}},
     "args.p: no {p} placeholder"),
    ({"commands": {"x": {"argv": ["a"], "tiers": ["gold"]}}}, "commands.x.tiers: 'gold' is not a tier"),
    ({"commands": {"x": {"argv": ["a"], "tiers": []}}}, "chronograph.exec.commands.x.tiers"),
    ({"commands": {"x": {"argv": ["a", "{p}"], "args": {"p": {"pattern": "("}}, "tiers": ["free"]}}},
     "chronograph.exec.commands.x.args.p"),
    ({"mode": "hybrid"}, "routes.pro: no endpoint named 'cloud'"),
    ({"mode": "cloud"}, "needs an endpoint named 'cloud'"),
    ({"endpoints": {"a": {"url": "ftp://x"}}}, "chronograph.exec.endpoints.a.url"),
    ({"tiers": {"free": {"timeout_s": 0}}}, "chronograph.exec.tiers.free.timeout_s"),
    ({"tiers": {"free": {"timeout_s": "2 weeks"}}}, "chronograph.exec.tiers.free.timeout_s"),
    ({"shell": True}, "chronograph.exec.shell: unknown key"),
])
def test_config_errors_name_the_key(exec_section: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_config({"exec": exec_section}, environ={})
    assert key in str(err.value)


def test_config_accepts_the_spec_example() -> None:
    cfg = load_config({"exec": {
        "commands": {
            "echo_upper": {"argv": ["python3", "-c", "import sys; print(sys.argv[1].upper())", "{text}"],
                           "args": {"text": {"max_length": 1000}}, "tiers": ["free", "pro"]},
            "report": {"argv": ["faf", "score", "{path}"],
                       "args": {"path": {"pattern": "^[a-z0-9_./-]{1,64}$"}}, "tiers": ["pro"]}},
        "tiers": {"free": {"timeout_s": 10, "output_cap_bytes": 65536, "concurrency": 2,
                           "rate_per_minute": 60},
                  "pro": {"timeout_s": "300s", "output_cap_bytes": 1048576, "concurrency": 8,
                          "rate_per_minute": 600}}}}, environ={})
    assert cfg.exec.tiers["pro"].timeout_s == 300 and cfg.exec.mode == "local"
