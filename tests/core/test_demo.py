"""Issue 8 item 9: what users see from `chronograph demo`: one cost format everywhere (6 decimals), and
the summary as a Rich table on a terminal, plain ASCII when piped or with NO_COLOR."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ..terminal import run_in_pty, terminal_env, unsafe_characters

DEMO = [str(Path(sys.executable).with_name("chronograph")), "demo", "--laps", "12", "--speed", "50"]


def _costs(out: str) -> list[str]:
    """Every cost the demo printed: per lap, per command in the summary, and the total."""
    found = re.findall(r"[Cc]ost:? (\S+) \(", out)  # split times: "Cost: 0.001000 (pro)"
    found += re.findall(r"total cost (\S+)", out)
    summary = out[out.index("SUMMARY"):]
    found += re.findall(r"^[│ ]*faf \w+\W.*?(\d+\.\d+)[ │]*$", summary, flags=re.M)  # the cost column
    return found


def test_piped_demo_prints_every_cost_with_six_decimals() -> None:
    out = subprocess.run(DEMO, env=terminal_env(), capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    costs = _costs(out.stdout)
    assert len(costs) >= 9 + 3 + 1, costs  # the 9 laps not on the free tier, three commands, the total
    assert all(re.fullmatch(r"\d+\.\d{6}", c) for c in costs), costs
    assert "\x1b" not in out.stdout and out.stdout.isascii()
    assert re.search(r"^command +laps +GREEN +YELLOW +RED", out.stdout, flags=re.M)


def test_demo_summary_is_a_rich_table_on_a_terminal() -> None:
    code, out = run_in_pty(DEMO, terminal_env())
    assert code == 0, out
    summary = out[out.index("SUMMARY"):]
    assert "\x1b[" in summary and "━" in summary  # colour and a Rich box, like the lap tables
    assert unsafe_characters(out) == []
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out.replace("\r\n", "\n"))
    costs = _costs(plain)
    assert len(costs) >= 13 and all(re.fullmatch(r"\d+\.\d{6}", c) for c in costs), costs


def test_demo_on_a_terminal_with_no_color_is_plain() -> None:
    code, out = run_in_pty(DEMO, terminal_env(NO_COLOR="1"))
    assert code == 0, out
    assert "\x1b" not in out and "SUMMARY\r\ncommand" in out
