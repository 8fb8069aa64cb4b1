"""Untrusted text (span names, commands, attribute values) made safe for a terminal: control characters
and escape sequences are shown, never interpreted."""

from __future__ import annotations

import re

__all__ = ["safe"]

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\x{ord(ch):02x}")


def safe(text: object) -> str:
    """``text`` with every C0/C1 control character (ESC included) written as a visible escape."""
    s = str(text)
    return _CONTROL.sub(_escape, s) if _CONTROL.search(s) else s
