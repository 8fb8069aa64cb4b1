"""Correlations on labelled synthetic traces: the planted cause ranks first for errors and for
slowness, an interaction shows as a pair, and decoys (status codes, tiny support, noise) are not
reported."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from opentelemetry.trace import SpanKind

from otel_chronograph.engine import SpanRecord
from otel_chronograph.insights._cli import insights
from otel_chronograph.insights._correlations import _bh, find_correlations

from .helpers import new_id, span, store

REGIONS = ("eu-1", "eu-2", "eu-3", "us-1")
VERSIONS = ("2.0", "2.1", "2.2")


def _traces(seed: int = 5, n: int = 4000) -> list[SpanRecord]:
    rng = random.Random(seed)
    out: list[SpanRecord] = []
    for i in range(n):
        region, version = rng.choice(REGIONS), rng.choice(VERSIONS)
        tier = rng.choice(("free", "pro"))
        shard = f"s{rng.randrange(12)}"  # noise: 12 values, no effect
        p_error = 0.01
        if version == "2.1":
            p_error = 0.12  # the planted cause of errors
        if region == "eu-2" and tier == "pro":
            p_error = 0.10  # an interaction: neither part alone explains it
        error = rng.random() < p_error
        ms = rng.lognormvariate(3.0, 0.25) * (3.0 if region == "us-1" and rng.random() < 0.35 else 1.0)
        trace, root = new_id(), new_id()
        attrs = {"region": region, "tier": tier, "shard": shard,
                 "http.response.status_code": 500 if error else 200}
        out.append(span("GET /orders", i * 30.0, ms, trace=trace, span_id=root, error=error,
                        attributes=attrs))
        out.append(span("SELECT orders", i * 30.0 + 0.001, ms / 3, service="db", trace=trace, parent=root,
                        kind=SpanKind.CLIENT, attributes={"db.system": "sqlite"}))
        out[-2].resource = {"service.name": "web", "service.version": version}
    # tiny support: three traces of one customer, all failing, must not be reported
    for j in range(3):
        out.append(span("GET /orders", n * 30.0 + j, 20.0, error=True, attributes={"customer": "cus_rare"}))
    return out


@pytest.fixture(scope="module")
def found(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    conn = store(tmp_path_factory.mktemp("corr") / "s.duckdb", _traces())
    try:
        return find_correlations(conn)
    finally:
        conn.close()


def test_the_planted_causes_rank_first(found: list[dict[str, Any]]) -> None:
    errors = [f for f in found if f["target"] == "error"]
    slow = [f for f in found if f["target"] == "slow"]
    assert errors[0]["attributes"] == {"service.version": "2.1"}
    assert errors[0]["q_value"] < 1e-6 and errors[0]["lift"] > 2
    assert slow[0]["attributes"] == {"region": "us-1"}


def test_an_interaction_is_reported_as_a_pair(found: list[dict[str, Any]]) -> None:
    pairs = [f for f in found if f["target"] == "error" and len(f["attributes"]) == 2]
    assert {"region": "eu-2", "tier": "pro"} in [p["attributes"] for p in pairs]


def test_decoys_are_not_reported(found: list[dict[str, Any]]) -> None:
    keys = {k for f in found for k in f["attributes"]}
    assert "http.response.status_code" not in keys  # restates the outcome
    assert "customer" not in keys  # three traces: below the minimum support
    assert "shard" not in keys  # noise
    assert all(f["q_value"] < 0.01 and f["share_selected"] > f["share_rest"] for f in found)


def test_benjamini_hochberg_matches_the_textbook_example() -> None:
    import numpy as np

    p = np.array([0.01, 0.04, 0.03, 0.005])
    assert np.allclose(_bh(p), [0.02, 0.04, 0.04, 0.02])


def test_cli_json_table_and_errors(tmp_path: Path) -> None:
    store(tmp_path / "s.duckdb", _traces(n=1500)).close()
    runner = CliRunner()
    as_json = runner.invoke(insights, ["correlations", "--db", str(tmp_path / "s.duckdb"), "--json"])
    assert as_json.exit_code == 0, as_json.output
    items = json.loads(as_json.output)
    assert items and set(items[0]) == {"target", "attributes", "traces", "selected", "share_selected",
                                       "share_rest", "lift", "g", "p_value", "q_value"}
    text = runner.invoke(insights, ["correlations", "--db", str(tmp_path / "s.duckdb"),
                                    "--exclude", "service.*"])
    assert text.exit_code == 0 and "target" in text.output and "service.version" not in text.output
    empty = runner.invoke(insights, ["correlations", "--db", str(tmp_path / "s.duckdb"),
                                     "--until", "2020-01-01"])
    assert empty.exit_code == 0 and "no attribute value" in empty.output
    missing = runner.invoke(insights, ["correlations", "--db", str(tmp_path / "nope.duckdb")])
    assert missing.exit_code == 1 and "Traceback" not in missing.output and "nope.duckdb" in missing.output
