"""Argv templates of named commands: ``{name}`` placeholders filled by validated arguments, never a shell.

A leaf module (only ``re``): the configuration validates templates with it at start-up, the server and
``chronograph exec`` fill them per run. ``{{`` and ``}}`` are literal braces; any other brace is literal
too, so a script such as ``print({"a": 1})`` needs no escaping.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["ArgumentError", "check_argument", "fill", "placeholder_names"]

_TOKEN = re.compile(r"\{\{|\}\}|\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ArgumentError(ValueError):
    """An argument a rule refuses; the message names the argument and the rule (never echoes it whole)."""


def placeholder_names(argv: Sequence[str]) -> list[str]:
    """Distinct placeholder names in order of first appearance: ``args[i]`` fills the i-th."""
    names: list[str] = []
    for element in argv:
        for found in _TOKEN.finditer(element):
            name = found.group(1)
            if name is not None and name not in names:
                names.append(name)
    return names


def _substitute(element: str, values: Mapping[str, str]) -> str:
    def one(found: re.Match[str]) -> str:
        name = found.group(1)
        if name is None:
            return found.group(0)[0]  # "{{" -> "{", "}}" -> "}"
        return values[name]

    return _TOKEN.sub(one, element)


def check_argument(name: str, value: Any, rule: Any) -> str:
    """``value`` if ``rule`` (an ``ExecArg``) accepts it; raises :class:`ArgumentError` otherwise.

    Checked in order of cost: type, NUL, length, encodability, leading dash (a program reads it as an
    option: argument injection), path shape, then the pattern (``re.fullmatch``: ``$`` cannot match
    before a trailing newline)."""
    if not isinstance(value, str):
        raise ArgumentError(f"argument {name!r} must be a string, got {type(value).__name__}")
    if "\x00" in value:
        raise ArgumentError(f"argument {name!r} contains a NUL byte")
    if len(value) > rule.max_length:
        raise ArgumentError(f"argument {name!r} is longer than {rule.max_length} characters ({len(value)})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ArgumentError(f"argument {name!r} is not valid Unicode text (a lone surrogate)") from None
    if value.startswith("-") and not rule.leading_dash:
        raise ArgumentError(f"argument {name!r} starts with '-' (it would be read as an option); "
                            "the command's rule does not allow that")
    if rule.path:
        parts = value.split("/")
        if value.startswith("/") or ".." in parts:
            raise ArgumentError(f"argument {name!r} must be a relative path without '..' components")
    if rule.pattern is not None and re.fullmatch(rule.pattern, value) is None:
        raise ArgumentError(f"argument {name!r} does not match the pattern {rule.pattern!r}")
    return value


def fill(argv: Sequence[str], rules: Mapping[str, Any], args: Sequence[Any]) -> list[str]:
    """The argv to run: each ``args[i]`` checked by its rule and put in place of the i-th placeholder.
    Raises :class:`ArgumentError` for a wrong count or a refused value."""
    names = placeholder_names(argv)
    if len(args) != len(names):
        expected = ", ".join(names) or "none"
        raise ArgumentError(f"expected {len(names)} argument(s) ({expected}), got {len(args)}")
    values = {name: check_argument(name, value, rules[name]) for name, value in zip(names, args, strict=True)}
    return [_substitute(element, values) for element in argv]
