"""Reading a configuration file's YAML safely: libyaml when present, bounded depth and alias expansion,
every failure a one-line :class:`ConfigError`. Its own module so that PyYAML is imported only when a
file is read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ._config import MAX_YAML_DEPTH, MAX_YAML_NODES, ConfigError, _cut, _read_text
from ._text import safe_lines

__all__ = ["read_yaml"]


def _expanded_size(node: yaml.Node, limit: int) -> int:
    """How many nodes the document has once aliases are expanded, counted without expanding them
    (each distinct node once, times how often it is referenced); stops counting past ``limit``."""
    sizes: dict[int, int] = {}
    order: list[yaml.Node] = []
    stack = [node]
    seen: set[int] = set()
    while stack:  # iterative post-order: deep documents must not hit the recursion limit
        cur = stack.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        order.append(cur)
        if isinstance(cur, yaml.SequenceNode):
            stack.extend(cur.value)
        elif isinstance(cur, yaml.MappingNode):
            for k, v in cur.value:
                stack.extend((k, v))
    for cur in reversed(order):
        total = 1
        if isinstance(cur, yaml.SequenceNode):
            total += sum(sizes.get(id(c), 1) for c in cur.value)
        elif isinstance(cur, yaml.MappingNode):
            total += sum(sizes.get(id(k), 1) + sizes.get(id(v), 1) for k, v in cur.value)
        sizes[id(cur)] = min(total, limit + 1)
    return sizes.get(id(node), 0)


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml when present (10-50x faster than pure Python). A scalar the resolver accepts but Python
    cannot build (a 5,000-digit int, ``0000-01-01``, ``!!bool maybe``) is a YAML error at its line, not
    a ValueError or KeyError from inside PyYAML."""

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except yaml.YAMLError:
            raise
        except Exception as exc:
            raise yaml.constructor.ConstructorError(None, None, f"cannot read this value: {exc}",
                                                    node.start_mark) from None


def _check_depth(text: str, path: Path) -> None:
    """libyaml's composer recurses in C: a 200,000-deep ``[[[...`` crashes the interpreter. Its parser
    does not, so the events are walked first and the document refused past a sane depth."""
    parser = _Loader(text)
    depth = 0
    try:
        while (event := parser.get_event()) is not None:
            if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
                depth += 1
                if depth > MAX_YAML_DEPTH:
                    raise ConfigError(f"{path}: YAML nested more than {MAX_YAML_DEPTH} levels deep: "
                                      "not loaded")
            elif isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
                depth -= 1
    except yaml.YAMLError as exc:
        if "nesting depth" not in str(exc):  # PyYAML >= 6.0.3 has a limit of its own for flow collections
            raise
        raise ConfigError(f"{path}: YAML nested more than {MAX_YAML_DEPTH} levels deep: not loaded") from None
    finally:
        parser.dispose()


def read_yaml(path: Path) -> Any:
    """See ``_config._read_yaml``."""
    text = _read_text(path)
    try:
        _check_depth(text, path)
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            if _expanded_size(node, MAX_YAML_NODES) > MAX_YAML_NODES:
                raise ConfigError(f"{path}: more than {MAX_YAML_NODES} values once YAML aliases are "
                                  "expanded (an alias bomb?): not loaded")
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        message = safe_lines(str(exc).replace('in "<unicode string>", ', ""))
        raise ConfigError(f"{path}: not valid YAML: {_cut(message, 300)}") from None
    except RecursionError:  # pragma: no cover - the depth check comes first
        raise ConfigError(f"{path}: YAML nested too deeply") from None
