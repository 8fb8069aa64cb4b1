"""Insights over exported telemetry: an embedded DuckDB store, detectors, reports and generators.

Everything here needs the ``insights`` extra (DuckDB); nothing imports it until a command runs.
See docs/insights.md for the methods and the figures.
"""

from __future__ import annotations

__all__: list[str] = []
