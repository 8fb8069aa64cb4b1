"""Issue 9 item 6: hostile span names, commands, sectors and events reach the split-time display as
visible text, never as terminal control sequences or Rich markup, on a real terminal and piped."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from otel_chronograph._text import safe

from ..terminal import HOSTILE, run_in_pty, terminal_env, unsafe_characters

CHILD = r"""
import json, sys
from opentelemetry.sdk.trace import TracerProvider
import otel_chronograph as chrono

hostile = json.loads(sys.argv[1])
provider = TracerProvider()
proc = chrono.install(provider, config={"display": {"split_times": True, "stream": "stdout"},
                                        "recorder": {"enabled": False},
                                        "billing": {"default_rate": "0.001"}})
ids = []
for i, text in enumerate(hostile):
    with chrono.lap(text, tier=text, tracer_provider=provider) as handle:
        with chrono.sector(text, tracer_provider=provider):
            handle.event(text, **{text: text})
    ids.append(handle.request_id)
proc.shutdown()
with open(sys.argv[2], "w") as f:
    json.dump(ids, f)
"""


def _run(tmp_path: Path, tty: bool) -> tuple[str, list[str]]:
    ids_file = tmp_path / "ids.json"
    argv = [sys.executable, "-c", CHILD, json.dumps(HOSTILE), str(ids_file)]
    if tty:
        code, out = run_in_pty(argv, terminal_env())
    else:
        done = subprocess.run(argv, env=terminal_env(), capture_output=True, text=True, timeout=60)
        code, out = done.returncode, done.stdout + done.stderr
    assert code == 0, out
    return out, json.loads(ids_file.read_text())


def _check(out: str, ids: list[str]) -> None:
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.replace("\r\n", "\n"))
    assert unsafe_characters(out) == [], plain
    for request_id in ids:  # every lap shown: markup-like names do not crash the display
        assert request_id in plain, (request_id, plain)
    # one LAP TIME row per lap: a newline in a command cannot forge one
    assert len(re.findall(r"^\s*LAP TIME", plain, flags=re.M)) == len(ids), plain
    for shown in ("[/]", "[link=https://evil.example/]x[/link]", "[bold]loud", "\\x1b]0;pwned\\x07",
                  "\\x9b31mred", "\\nLAP TIME: 0.1ms GREEN", "\\u202etxt.exe"):
        assert shown in plain or shown.upper() in plain, (shown, plain)


def test_split_times_on_a_terminal_show_hostile_text_literally(tmp_path: Path) -> None:
    out, ids = _run(tmp_path, tty=True)
    assert "\x1b[" in out  # the Rich table, in colour
    _check(out, ids)


def test_split_times_piped_show_hostile_text_literally(tmp_path: Path) -> None:
    out, ids = _run(tmp_path, tty=False)
    assert "\x1b" not in out
    _check(out, ids)


@given(st.text())
def test_safe_text_has_no_control_characters_and_keeps_printable_text(text: str) -> None:
    shown = safe(text)
    assert unsafe_characters(shown) == [] and "\n" not in shown
    assert safe(shown) == shown  # escaping twice changes nothing
    if text.isprintable():
        assert shown == text
