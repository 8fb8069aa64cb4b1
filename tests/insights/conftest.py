"""Fixtures shared by the detector tests: a module defines ``labelled`` (its store and the truth)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest


@pytest.fixture()
def conn(labelled: tuple[Path, Any]) -> Iterator[duckdb.DuckDBPyConnection]:
    """The module's labelled store, read-only."""
    c = duckdb.connect(str(labelled[0]), read_only=True)
    yield c
    c.close()
