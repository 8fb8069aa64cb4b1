"""``insights anomalies`` on labelled synthetic telemetry: precision and recall measured and asserted,
decoys never flagged, the item shape, invariants (hypothesis) and the command line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import duckdb
import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_chronograph.insights._anomalies import anomalies_command, find_anomalies, iso_utc
from tests.insights.helpers import EPOCH_NS, span, store
from tests.insights.synth import ANOMALY_OPS, LOW_TRAFFIC, Telemetry, anomaly_telemetry

KEYS = {"trace_id", "span_id", "operation", "service", "span_name", "duration_ms", "baseline_ms", "score",
        "start"}


@pytest.fixture(scope="module")
def labelled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Telemetry]]:
    tel = anomaly_telemetry(seed=1)
    path = tmp_path_factory.mktemp("anomalies") / "store.duckdb"
    store(path, tel.records).close()
    yield path, tel


def precision_recall(items: list[dict[str, Any]], truth: set[str]) -> tuple[float, float]:
    flagged = {i["span_id"] for i in items}
    hits = len(flagged & truth)
    return hits / max(len(flagged), 1), hits / len(truth)


def test_precision_and_recall_on_labelled_telemetry(conn: duckdb.DuckDBPyConnection,
                                                     labelled: tuple[Path, Telemetry]) -> None:
    tel = labelled[1]
    assert len(tel.records) - len(tel.anomalous) >= 50_000 and len(tel.anomalous) == 300
    items = find_anomalies(conn)
    precision, recall = precision_recall(items, tel.anomalous)
    print(f"anomalies seed 1: {len(items)} flagged, {len(tel.anomalous)} planted among {len(tel.records)}: "
          f"precision {precision:.4f} recall {recall:.4f}")
    assert precision >= 0.95 and recall >= 0.95


@pytest.mark.parametrize("seed", [2, 3])
def test_precision_and_recall_other_seeds(tmp_path: Path, seed: int) -> None:
    tel = anomaly_telemetry(seed=seed)
    c = store(tmp_path / "s.duckdb", tel.records)
    precision, recall = precision_recall(find_anomalies(c), tel.anomalous)
    print(f"anomalies seed {seed}: precision {precision:.4f} recall {recall:.4f}")
    assert precision >= 0.95 and recall >= 0.95


def test_decoys_are_not_flagged(conn: duckdb.DuckDBPyConnection, labelled: tuple[Path, Telemetry]) -> None:
    """Heavy tail, seasonal peak and the low-traffic operation give no false anomaly."""
    tel = labelled[1]
    false = [i for i in find_anomalies(conn) if i["span_id"] not in tel.anomalous]
    by_op = {i["operation"] for i in false}
    heavy, peak = ANOMALY_OPS[4].operation, ANOMALY_OPS[3].operation
    assert heavy not in by_op and peak not in by_op and LOW_TRAFFIC.operation not in by_op
    assert len(false) <= 3


def test_seasonal_baseline_is_what_catches_them(conn: duckdb.DuckDBPyConnection,
                                                labelled: tuple[Path, Telemetry]) -> None:
    """The decoys matter: one global baseline per operation (no hour buckets) misses > 5 %."""
    _, recall = precision_recall(find_anomalies(conn, min_bucket=10**9), labelled[1].anomalous)
    print(f"global baseline only: recall {recall:.4f}")
    assert recall < 0.95


def test_items_shape_and_order(conn: duckdb.DuckDBPyConnection, labelled: tuple[Path, Telemetry]) -> None:
    items = find_anomalies(conn)
    by_id = {f"{r.span_id:016x}": r for r in labelled[1].records}
    assert items and all(set(i) == KEYS for i in items)
    scores = [i["score"] for i in items]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 4.0
    for item in items:
        record = by_id[item["span_id"]]
        assert item["trace_id"] == f"{record.trace_id:032x}"
        assert item["operation"] == f"{item['service']}: {item['span_name']}"
        assert item["duration_ms"] > item["baseline_ms"] > 0
        assert item["start"] == iso_utc(record.start_time) and item["start"].endswith("Z")
        assert abs(datetime.fromisoformat(item["start"]).timestamp() * 1e9 - record.start_time) < 2e3


def test_threshold_and_min_spans(conn: duckdb.DuckDBPyConnection) -> None:
    default = find_anomalies(conn)
    strict = find_anomalies(conn, threshold=8.0)
    assert {i["span_id"] for i in strict} < {i["span_id"] for i in default}
    assert find_anomalies(conn, min_spans=10**7) == []


def test_where_narrows(conn: duckdb.DuckDBPyConnection) -> None:
    assert find_anomalies(conn, "label = 'test'") == []
    day2 = EPOCH_NS + 86_400 * 10**9
    items = find_anomalies(conn, "label = 'prod' AND start_ns < ?", [day2])
    assert items and all(i["start"] < iso_utc(day2) for i in items)


@st.composite
def small_ops(draw: st.DrawFn) -> list[tuple[float, int]]:
    """(start s, duration ms) of one operation: 40-120 spans around a drawn median, a few outliers.

    Whole milliseconds, so a whole factor keeps the stored nanoseconds exact."""
    n = draw(st.integers(40, 120))
    median = draw(st.integers(2, 5_000))
    durations = draw(st.lists(st.integers(max(median // 2, 1), median * 2), min_size=n, max_size=n))
    outliers = draw(st.lists(st.integers(0, n - 1), max_size=4))
    return [(i * 600.0, d * (50 if i in outliers else 1)) for i, d in enumerate(durations)]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spans=small_ops(), factor=st.sampled_from([2, 3, 10, 1000]))
def test_scale_invariance_and_monotone_threshold(spans: list[tuple[float, int]], factor: int) -> None:
    """Scores are on log latency: multiplying every duration by a constant changes nothing but the
    baselines; raising the threshold only removes spans."""
    def records(k: int) -> list[Any]:
        return [span("op", t, d * k, span_id=i + 1, trace=i + 1) for i, (t, d) in enumerate(spans)]

    a = find_anomalies(store(":memory:", records(1)))
    b = find_anomalies(store(":memory:", records(factor)))
    assert [i["span_id"] for i in a] == [i["span_id"] for i in b]
    for x, y in zip(a, b, strict=True):
        assert x["score"] == pytest.approx(y["score"], abs=1e-9)
        assert y["baseline_ms"] == pytest.approx(x["baseline_ms"] * factor, rel=1e-9)
    higher = find_anomalies(store(":memory:", records(1)), threshold=6.0)
    assert {i["span_id"] for i in higher} <= {i["span_id"] for i in a}
    assert all(i["score"] >= 4.0 for i in a)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(st.tuples(st.integers(1, 200), st.floats(0, 30 * 86_400),
                              st.sampled_from([0.0, 0.0005, 3.0, 800.0]), st.floats(0, 2)),
                    min_size=1, max_size=3), seed=st.integers(0, 2**32 - 1))
def test_any_shape_of_data_gives_well_formed_items(ops: list[tuple[int, float, float, float]],
                                                   seed: int) -> None:
    """Zero durations, constant latency, one span or a month: no error, and items as promised."""
    rng = np.random.default_rng(seed)
    records = []
    for k, (n, history, median, sigma) in enumerate(ops):
        ms = median * np.exp(rng.normal(0, sigma, n))
        records += [span(f"op{k}", float(t), float(d)) for t, d in zip(rng.uniform(0, history, n), ms,
                                                                       strict=True)]
    items = find_anomalies(store(":memory:", records), min_spans=2, min_bucket=2)
    assert all(set(i) == KEYS and i["score"] >= 4.0 and i["duration_ms"] >= i["baseline_ms"] for i in items)
    assert [i["score"] for i in items] == sorted((i["score"] for i in items), reverse=True)


# --- command line ----------------------------------------------------------------------------------

def run(*args: str) -> Any:
    return CliRunner().invoke(anomalies_command, list(args), catch_exceptions=False)


def test_cli_json(labelled: tuple[Path, Telemetry]) -> None:
    result = run("--db", str(labelled[0]), "--json")
    assert result.exit_code == 0
    items = json.loads(result.output)
    assert len(items) >= 285 and all(set(i) == KEYS for i in items)
    assert items[0]["score"] >= items[-1]["score"] >= 4.0


def test_cli_text(labelled: tuple[Path, Telemetry]) -> None:
    result = run("--db", str(labelled[0]), "--threshold", "10")
    assert result.exit_code == 0
    lines = result.output.splitlines()
    assert lines[0].split() == ["score", "operation", "duration_ms", "baseline_ms", "start", "trace_id",
                                "span_id"]
    assert len(lines) > 1 and any("GET /orders/{id}" in line for line in lines[1:])


def test_cli_since_until(labelled: tuple[Path, Telemetry]) -> None:
    everything = json.loads(run("--db", str(labelled[0]), "--json").output)
    since, until = "2026-11-05T00:00:00Z", "2026-11-09T00:00:00Z"
    window = json.loads(run("--db", str(labelled[0]), "--json", "--since", since, "--until", until).output)
    assert window and len(window) < len(everything)
    assert all("2026-11-05" <= i["start"] < "2026-11-09" for i in window)
    empty = run("--db", str(labelled[0]), "--since", "2030-01-01")
    assert empty.exit_code == 0 and empty.output.strip() == "no anomalous spans"


def test_cli_missing_db(tmp_path: Path) -> None:
    missing = tmp_path / "nope.duckdb"
    result = CliRunner().invoke(anomalies_command, ["--db", str(missing)])
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert isinstance(result.exception, SystemExit)
    assert str(missing) in result.output


def test_cli_not_a_store(tmp_path: Path) -> None:
    other = tmp_path / "other.duckdb"
    duckdb.connect(str(other)).close()
    result = CliRunner().invoke(anomalies_command, ["--db", str(other), "--json"])
    assert result.exit_code != 0 and "no spans table" in result.output and "Traceback" not in result.output


def test_cli_bad_time(labelled: tuple[Path, Telemetry]) -> None:
    result = CliRunner().invoke(anomalies_command, ["--db", str(labelled[0]), "--since", "yesterday"])
    assert result.exit_code == 2 and "ISO 8601" in result.output


def test_command_is_a_click_command() -> None:
    assert isinstance(anomalies_command, click.Command) and anomalies_command.name == "anomalies"
