"""The ``--config`` contract shared by the stages' command groups (``billing``, ``recorder``)."""

from __future__ import annotations

from pathlib import Path

import click
from click.testing import CliRunner

__all__ = ["assert_bad_config_is_an_error"]


def assert_bad_config_is_an_error(group: click.Group, command: list[str], tmp_path: Path) -> None:
    """An invalid ``--config`` on the group or on the command, or a missing file, is exit status 1 with
    a message naming the file: never a traceback, never the defaults."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("chronograph: {recorder: {max_records: -1}, billing: {enabled: maybe}}\n")
    missing = tmp_path / "missing.yaml"
    for args, name in ((["--config", str(bad), *command], "bad.yaml"),
                       ([*command, "--config", str(bad)], "bad.yaml"),
                       (["--config", str(missing), *command], "missing.yaml")):
        res = CliRunner().invoke(group, args)
        assert res.exit_code == 1 and "Traceback" not in res.output, (args, res.output)
        assert name in res.output, (args, res.output)
