"""Untrusted text (span names, commands, sector names, event names and attributes) made safe for a
terminal: control characters and escape sequences are shown, never interpreted, and nothing is read as
Rich markup.

C0 and C1 controls, DEL and ESC become visible escapes (``\\x1b``, ``\\n``); so do the Unicode line
separators and the bidirectional overrides that reorder what a terminal shows. Text that is already
safe comes back unchanged, so escaping twice is harmless. For Rich and Textual, :func:`rich_text` gives a
``Text`` (literal, never markup) instead of a markup string.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.text import Text

__all__ = ["rich_text", "safe", "safe_lines"]

_BIDI_AND_SEPARATORS = (0x200E, 0x200F, 0x2028, 0x2029, *range(0x202A, 0x202F), *range(0x2066, 0x206A))
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f" + "".join(map(chr, _BIDI_AND_SEPARATORS)) + "]")
_ESCAPES = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_ESCAPES.update({0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"})
_ESCAPES.update({c: f"\\u{c:04x}" for c in _BIDI_AND_SEPARATORS})


def safe(text: object) -> str:
    """``text`` on one line, with every control character (ESC included) written as a visible escape."""
    s = str(text)
    return s.translate(_ESCAPES) if _CONTROL.search(s) else s


def safe_lines(text: str) -> str:
    """Like :func:`safe`, but keeps the line breaks (for multi-line text rendered elsewhere)."""
    return "\n".join(safe(line) for line in text.split("\n"))


def rich_text(text: object, style: str = "") -> Text:
    """A Rich ``Text`` showing ``text`` literally: ``[bold]`` stays ``[bold]``, ESC is ``\\x1b``."""
    from rich.text import Text

    return Text(safe(text), style=style)
