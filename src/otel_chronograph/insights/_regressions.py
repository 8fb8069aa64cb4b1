"""``insights regressions``: lasting latency step changes per operation, seasonality removed.

Method (docs/insights.md, "Regressions"), for every operation with at least ``min_spans`` spans:

1. Buckets (default 1 h, ``bucket_s``): ``y`` = median of ``ln(duration_ms)`` per bucket (DuckDB).
2. Seasonality as fixed effects, fitted jointly with the steps: ``y = season + steps + noise``, the
   season one of: none; hour of day (≥ 3 days of history); a weekend level, alone or plus hour of
   day (the window has weekend and weekday buckets); hour of day x weekday/weekend (same); hour of
   week (≥ 21 days). Each is scanned with its steps (step 3) and the lowest BIC wins (a step costs
   two parameters). A step's size is then learnt against the same season only, so a weekend that
   is always slower, or a daily peak, is not a change; and the BIC prefers one weekend parameter to
   a step at every weekend.
3. Change points by forward selection (binary segmentation with the seasonal model): per round the
   single split that most reduces the residual sum of squares given the steps so far (an exact
   least-squares scan of every bucket boundary, O(buckets x columns) with suffix sums) or the best
   pair of splits at most ``MAX_BUMP_BUCKETS`` apart (a bump, which a single split cannot see) when
   no single split is significant; kept while that bucket-level t-test (F-test for a pair), with a
   Bonferroni correction over the boundaries (pairs) scanned, has p < ``alpha``; up to
   ``max_changes`` steps; then each step is moved to its best place given the others. Bucket-level
   noise (bursty hours) is in this test's variance, so a noisy operation needs a big step.
4. Each change is placed to the span: within ``PLACE_BUCKETS`` buckets (and at least ``PLACE_S``,
   4 h) either side of it (never past a neighbouring change), the split of the de-seasonalised span
   latencies with the largest mean shift gives ``change_at`` (the bucket scan can be a few buckets
   off where traffic is thin).
5. Confirmation on the de-seasonalised ``ln(duration)`` of the spans between the neighbouring
   changes; every criterion must hold: Welch's t-test after vs before, Bonferroni-corrected like
   step 3, p < ``alpha``; at least ``min_side_spans`` spans each side; at least ``baseline_h``
   (24) hours since the previous change or the window's start (a few hours at a window's edge or
   between a dip and its recovery are no baseline); a slow-down of at least ``min_ratio``
   (after/before medians) and ``min_delta_ms``; and not transient: a rise that falls back below
   ``min_ratio`` of the earlier level within ``transient_h`` hours is a spike, not a regression.
   Speed-ups are changes in the model but never reported.

``before_ms``/``after_ms`` are de-seasonalised medians (at the operation's average season);
``p_value`` is the larger of the two corrected p-values (bucket level, span level). Items are in
operation order, then by ``change_at``.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click
import numpy as np
from numpy.typing import NDArray

from ._anomalies import LOG_DURATION_SQL, iso_utc
from ._output import emit
from ._store import db_option, open_store, prod_scope, window_options

if TYPE_CHECKING:
    import duckdb

__all__ = ["find_regressions", "regressions_command"]

COLUMNS = ("operation", "change_at", "before_ms", "after_ms", "p_value")
_HOUR_NS = 3_600_000_000_000
_DAY_NS = 24 * _HOUR_NS
Floats = NDArray[np.float64]
Ints = NDArray[np.int64]
#: how far (buckets, and at least seconds, either side) the span-level placement looks (step 4)
PLACE_BUCKETS = 4
PLACE_S = 4 * 3600


@dataclass
class _Change:
    bucket: int          # index into the operation's bucket arrays: the first bucket after the step
    p_bucket: float      # Bonferroni-corrected bucket-level p
    rising: bool         # the step's sign when it was selected
    at_ns: int = 0       # placed to the span (step 4)


def _season_designs(start_ns: Ints, span_ns: int) -> list[Floats]:
    """The seasonal models the history ``span_ns`` allows (module doc, step 2), simplest first.

    A periodic key needs three periods: with two, each key sees one period-on-period difference
    only, and "a step in the first period" fits exactly as well as "a step at the period boundary and
    a drop one period after the change". Hence hour of day from 3 days, hour of week from 21 days.
    A weekend level is offered whenever the window has weekend and weekday buckets: with one weekend
    it cannot be told from a bump over exactly that weekend, and the weekend is the likelier story;
    so is hour of day x weekday/weekend (a weekday-only daily peak), from 3 days. The BIC picks.
    """
    hours = start_ns // _HOUR_NS
    weekend = ((hours // 24 + 3) % 7 >= 5).astype(np.float64)
    flat = np.full((len(start_ns), 1), 1 / math.sqrt(len(start_ns)))
    designs = [flat]
    if span_ns >= 3 * _DAY_NS:
        designs.append(_one_hot(hours % 24))
    if 0 < weekend.sum() < len(weekend):
        designs.append(_extend(flat, weekend[:, None]))
        if span_ns >= 3 * _DAY_NS:
            designs.append(_extend(designs[1], weekend[:, None]))
            designs.append(_one_hot(hours % 24 + 24 * weekend.astype(np.int64)))
    if span_ns >= 21 * _DAY_NS:
        designs.append(_one_hot((hours + 72) % 168))  # the epoch was a Thursday: key 0 is Monday 00:00
    return designs


def _fit(y: Floats, designs: Sequence[Floats], alpha: float,
         max_changes: int) -> tuple[Floats, list[_Change]]:
    """The seasonal design and its steps with the lowest BIC (each design scanned on its own, bumps
    included: one outlying hour must not make a flat season plus steps look better)."""
    n = len(y)
    best: tuple[float, Floats, list[_Change]] | None = None
    for design in designs:
        changes = _scan(y, design, alpha, max_changes)
        q = _extend(design, _steps(n, [c.bucket for c in changes]))
        resid = y - q @ (q.T @ y)
        rss = max(float(resid @ resid), 1e-12)
        bic = n * math.log(rss / n) + (q.shape[1] + len(changes)) * math.log(n)  # a step: where, how much
        if best is None or bic < best[0]:
            best = (bic, design, changes)
    assert best is not None
    return best[1], best[2]


def _one_hot(keys: Ints) -> Floats:
    """Orthonormal indicator columns of ``keys`` (disjoint, so each is scaled by 1/sqrt(count))."""
    _, codes = np.unique(keys, return_inverse=True)
    counts = np.bincount(codes)
    return np.asarray(np.eye(len(counts))[codes] / np.sqrt(counts), dtype=np.float64)


def _extend(basis: Floats, columns: Floats) -> Floats:
    """``basis`` (orthonormal) extended by ``columns``, Gram-Schmidt twice; dependent ones dropped.

    Every design is orthonormal from the start, so a step costs O(buckets x columns), not an SVD."""
    out = basis
    for col in columns.T:
        v = col - out @ (out.T @ col)
        v = v - out @ (out.T @ v)
        norm = float(np.linalg.norm(v))
        if norm > 1e-8 * max(float(np.linalg.norm(col)), 1.0):
            out = np.column_stack([out, v / norm])
    return out


def _steps(n: int, at: Sequence[int]) -> Floats:
    return np.stack([(np.arange(n) >= s).astype(np.float64) for s in at], axis=1) if at else np.zeros((n, 0))


def _suffix(values: Floats) -> Floats:
    """Suffix sums along axis 0: ``out[i] = values[i:].sum(axis=0)``."""
    return np.cumsum(values[::-1], axis=0)[::-1]


def _best_step(y: Floats, design: Floats, fixed: Sequence[int]) -> tuple[int, float, float, int]:
    """The best new step given the design and the steps ``fixed``, as (bucket, t, df, boundaries
    scanned); bucket -1 when none can be fitted.

    For a step starting at bucket i, with Q an orthonormal basis of the design and fixed steps, the
    least-squares gain is num_i^2 / den_i with num_i = suffix sum of the residual and den_i =
    (n - i) - |suffix sums of Q|^2: every boundary is scanned in O(n * columns).
    """
    n = len(y)
    q = _extend(design, _steps(n, fixed))
    resid = y - q @ (q.T @ y)
    den = (n - np.arange(n)) - (_suffix(q) ** 2).sum(axis=1)
    num = _suffix(resid)
    valid = den > 1e-6
    valid[0] = False
    valid[list(fixed)] = False
    candidates = int(valid.sum())
    df = n - q.shape[1] - 1
    if candidates == 0 or df < 3:
        return -1, 0.0, 0, 0
    gain = np.where(valid, num ** 2 / np.where(valid, den, 1.0), -1.0)
    best = int(np.argmax(gain))
    sigma2 = max((float(resid @ resid) - float(gain[best])) / df, 1e-12)
    return best, float(num[best] / math.sqrt(sigma2 * den[best])), df, candidates


def _best_pair(y: Floats, design: Floats, fixed: Sequence[int]) -> tuple[tuple[int, int], float, int, int]:
    """The best two new steps at most ``MAX_BUMP_BUCKETS`` apart (a rise and its fall: a bump),
    as ((i, j), F, df, pairs scanned).

    A single-step scan cannot see a bump in the middle of a series (the classic blind spot of binary
    segmentation): the step at its start explains little of it. Every such pair is scored by its
    exact two-column least-squares gain, O(buckets x width x columns) in one einsum. Longer bumps
    show as steps.
    """
    n = len(y)
    q = _extend(design, _steps(n, fixed))
    resid = y - q @ (q.T @ y)
    sq = _suffix(q)
    idx = np.arange(n)
    den = (n - idx) - (sq ** 2).sum(axis=1)
    num = _suffix(resid)
    valid = den > 1e-6
    valid[0] = False
    valid[list(fixed)] = False
    df = n - q.shape[1] - 2
    width = min(MAX_BUMP_BUCKETS, n - 1)
    if width < 1 or df < 3:
        return (-1, -1), 0.0, 0, 0
    # pairs (i, i + d), d = 1..width, as an n x width band: row i against the next ``width`` rows
    # through sliding windows (views, no copies); out-of-range pairs fall on zero padding
    def ahead(values: NDArray[Any]) -> NDArray[Any]:
        pad = np.zeros((width + 1, *values.shape[1:]), dtype=values.dtype)
        window = np.lib.stride_tricks.sliding_window_view(np.concatenate([values, pad])[1:], width, axis=0)
        return window[:n]

    den_j, num_j, valid_j = ahead(den), ahead(num), ahead(valid)
    cross = (n - idx[:, None] - np.arange(1, width + 1)[None, :]) - np.einsum("tk,tkw->tw", sq, ahead(sq))
    den_i, num_i = den[:, None], num[:, None]
    det = den_i * den_j - cross ** 2
    ok = valid[:, None] & valid_j & (det > 1e-9 * np.maximum(den_i * den_j, 1e-12))
    pairs = int(ok.sum())
    if pairs == 0:
        return (-1, -1), 0.0, 0, 0
    gain = np.where(ok, (num_i ** 2 * den_j - 2 * num_i * num_j * cross + num_j ** 2 * den_i)
                    / np.where(ok, det, 1.0), -1.0)
    row, col = np.unravel_index(int(np.argmax(gain)), gain.shape)
    best = float(gain[row, col])
    rss = max(float(resid @ resid) - best, 1e-12 * df)
    return (int(row), int(row + col + 1)), best / 2 / (rss / df), df, pairs


#: the widest bump (``_best_pair``), in buckets: two days of hours
MAX_BUMP_BUCKETS = 48


def _scan(y: Floats, design: Floats, alpha: float, max_changes: int) -> list[_Change]:
    """Forward selection of steps in ``y`` under the seasonal design (module doc, step 3): at each
    round the best single step, or when none is significant the best bump (two steps); then one
    pass that moves each step to its best place given the others (greedy picks can sit between two
    real changes)."""
    from scipy import special  # the distributions' ufuncs: scipy.stats adds ~0.2 ms a call

    def p_of(t: float, df: float, candidates: int) -> float:
        return min(1.0, 2 * float(special.stdtr(df, -abs(t))) * candidates)

    steps: list[int] = []
    while len(steps) < max_changes:
        best, t, df, candidates = _best_step(y, design, steps)
        if best >= 0 and p_of(t, df, candidates) < alpha:
            steps.append(best)
            continue
        # a bump only when no single step is left: beside a strong step, a pair (the step plus a
        # noise step) can out-score the step alone and then displace it
        if len(steps) + 2 > max_changes:
            break
        pair, f, df2, pairs = _best_pair(y, design, steps)
        if pair[0] < 0 or min(1.0, float(special.fdtrc(2, df2, f)) * pairs) >= alpha:
            break
        steps.extend(pair)
    found = []
    for i in range(len(steps)):
        others = steps[:i] + steps[i + 1:]
        best, t, df, candidates = _best_step(y, design, others)
        if best >= 0:
            steps[i] = best
            found.append(_Change(best, p_of(t, df, candidates), t > 0))
    return sorted((c for c in found if c.p_bucket < alpha), key=lambda c: c.bucket)


def _bucket_seasons(y: Floats, design: Floats, steps: Sequence[int]) -> Floats:
    """Per bucket, the seasonal part of the least-squares fit (design and steps jointly), leave-one-
    out: a bucket the change splits must not pull its own baseline, or the change is placed at the
    bucket's edge."""
    cols = _steps(len(y), steps)
    beta = np.zeros(len(steps))
    if steps:
        within = cols - design @ (design.T @ cols)
        beta, *_ = np.linalg.lstsq(within, y - design @ (design.T @ y), rcond=None)
    season = design @ (design.T @ (y - cols @ beta))
    q = _extend(design, cols)
    leverage = (q ** 2).sum(axis=1)
    resid = y - season - cols @ beta
    loo = np.where(leverage < 0.99, leverage / np.maximum(1 - leverage, 1e-9) * resid, 0.0)
    return np.asarray(season - loo, dtype=np.float64)


def _place(t: Ints, x: Floats, lo: int, hi: int, rising: bool) -> int | None:
    """The start of the first span after the best mean-shift split of spans in [lo, hi)."""
    i0, i1 = np.searchsorted(t, [lo, hi])
    seg = x[i0:i1]
    m = len(seg)
    if m < 6:
        return None
    left = np.cumsum(seg)[:-1]
    k = np.arange(1, m)
    shift = (seg.sum() - left) / (m - k) - left / k
    score = np.where(shift > 0 if rising else shift < 0, shift ** 2 * k * (m - k) / m, -1.0)
    score[:2] = -1.0
    score[-2:] = -1.0
    best = int(np.argmax(score))
    return int(t[i0 + best + 1]) if score[best] > 0 else None


def _welch(after: Floats, before: Floats) -> float:
    """Welch's two-sided p for a difference in means; constant samples (a clock-resolution operation)
    give 0 when the two constants differ and 1 when not, instead of SciPy's precision warning."""
    from scipy import stats

    if float(np.var(after)) < 1e-12 and float(np.var(before)) < 1e-12:
        return 0.0 if abs(float(np.mean(after)) - float(np.mean(before))) > 1e-9 else 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # near-constant samples: the p is still usable
        p = float(stats.ttest_ind(after, before, equal_var=False).pvalue)
    return p if math.isfinite(p) else 1.0


def _merge(changes: list[_Change], t: Ints, min_side_spans: int) -> list[_Change]:
    """Changes in time order, each with at least ``min_side_spans`` spans since the previous one
    and before the end: a busy bucket split by a change reads as two steps an hour apart, one
    change; a change too close to the data's edge is no change to report."""
    kept: list[_Change] = []
    prev = 0
    for c in sorted(changes, key=lambda c: c.at_ns):
        at = int(np.searchsorted(t, c.at_ns))
        if at - prev >= min_side_spans and len(t) - at >= min_side_spans:
            kept.append(c)
            prev = at
    return kept


def find_regressions(conn: duckdb.DuckDBPyConnection, where: str = "label = 'prod'",
                     params: Sequence[Any] = (), *, bucket_s: int = 3600, min_spans: int = 100,
                     min_side_spans: int = 30, min_ratio: float = 1.10, min_delta_ms: float = 1.0,
                     alpha: float = 0.01, transient_h: float = 6.0, baseline_h: float = 24.0,
                     max_changes: int = 4) -> list[dict[str, Any]]:
    """Lasting slow-downs per operation among the rows ``where`` selects (module doc)."""
    bucket_ns = int(bucket_s * 1e9)
    ops = conn.execute(f"""
        SELECT operation, any_value(service), any_value(name) FROM spans WHERE {where}
        GROUP BY operation HAVING count(*) >= ? ORDER BY operation""", [*params, min_spans]).fetchall()
    if not ops:
        return []
    data = conn.execute(f"""
        WITH s AS (SELECT operation, start_ns // {bucket_ns} AS b, {LOG_DURATION_SQL} AS ld
                   FROM spans WHERE {where})
        SELECT operation, b, median(ld) AS y FROM s
        WHERE operation IN (SELECT operation FROM spans WHERE {where} GROUP BY operation
                            HAVING count(*) >= ?)
        GROUP BY operation, b ORDER BY operation, b""", [*params, *params, min_spans]).fetchnumpy()
    names = np.asarray(data["operation"])
    bounds = np.flatnonzero(np.r_[True, names[1:] != names[:-1], True])
    fits: list[tuple[tuple[str, str, str], Ints, Floats, Floats, list[_Change]]] = []
    for head, lo, hi in zip(ops, bounds[:-1], bounds[1:], strict=True):
        b = np.asarray(data["b"][lo:hi], dtype=np.int64)
        y = np.asarray(data["y"][lo:hi], dtype=np.float64)
        start = b * bucket_ns
        design, changes = _fit(y, _season_designs(start, int(start[-1] - start[0]) + bucket_ns), alpha,
                               max_changes)
        if changes:
            fits.append((head, b, y, _bucket_seasons(y, design, [c.bucket for c in changes]), changes))
    if not fits:
        return []
    # the spans of every operation with a candidate change, in one scan of the table
    spans = conn.execute(f"""
        SELECT operation, start_ns, {LOG_DURATION_SQL} AS ld FROM spans
        WHERE ({where}) AND operation IN (SELECT unnest(?::VARCHAR[]))
        ORDER BY operation, start_ns""", [*params, [f[0][0] for f in fits]]).fetchnumpy()
    names = np.asarray(spans["operation"])
    bounds = np.flatnonzero(np.r_[True, names[1:] != names[:-1], True])
    out: list[dict[str, Any]] = []
    for (head, b, y, seasons, changes), lo, hi in zip(fits, bounds[:-1], bounds[1:], strict=True):
        t = np.asarray(spans["start_ns"][lo:hi], dtype=np.int64)
        ld = np.asarray(spans["ld"][lo:hi], dtype=np.float64)
        out += _confirm(head, b, y, seasons, changes, t, ld, bucket_s, min_side_spans, min_ratio,
                        min_delta_ms, alpha, transient_h, baseline_h)
    return out


def _confirm(head: tuple[str, str, str], b: Ints, y: Floats, seasons: Floats, changes: list[_Change],
             t: Ints, ld: Floats, bucket_s: int, min_side_spans: int, min_ratio: float,
             min_delta_ms: float, alpha: float, transient_h: float,
             baseline_h: float) -> list[dict[str, Any]]:
    """One operation's candidate changes placed to the span and confirmed (module doc, steps 4-5)."""
    op, service, span_name = head
    bucket_ns = int(bucket_s * 1e9)
    start = b * bucket_ns
    season = seasons[np.searchsorted(b, t // bucket_ns)]
    x = ld - season
    typical = float(np.mean(season))
    reach = max(PLACE_BUCKETS, math.ceil(PLACE_S / bucket_s))
    for i, c in enumerate(changes):
        # the bucket scan can be a few buckets off where traffic is thin (nights): search the
        # spans up to PLACE_BUCKETS buckets / PLACE_S either side, never past a neighbouring change
        lo = max(int(np.searchsorted(b, b[c.bucket] - reach)), changes[i - 1].bucket if i else 0)
        hi = min(int(np.searchsorted(b, b[c.bucket] + reach)),
                 changes[i + 1].bucket if i + 1 < len(changes) else len(b))
        placed = _place(t, x, int(start[lo]), int(start[hi - 1]) + bucket_ns, c.rising)
        c.at_ns = placed if placed is not None else int(start[c.bucket])
    changes = _merge(changes, t, min_side_spans)
    cuts = [int(t[0]), *(c.at_ns for c in changes), int(t[-1]) + 1]
    segments = [x[np.searchsorted(t, a):np.searchsorted(t, z)] for a, z in itertools.pairwise(cuts)]
    medians = [float(np.median(s)) if len(s) else math.nan for s in segments]
    out: list[dict[str, Any]] = []
    for i, c in enumerate(changes):
        before, after = segments[i], segments[i + 1]
        if (len(before) < min_side_spans or len(after) < min_side_spans
                or c.at_ns - cuts[i] < baseline_h * _HOUR_NS):
            continue
        ratio = math.exp(medians[i + 1] - medians[i])
        before_ms = math.exp(medians[i] + typical)
        after_ms = math.exp(medians[i + 1] + typical)
        if ratio < min_ratio or after_ms - before_ms < min_delta_ms:
            continue
        if (i + 2 < len(segments) and cuts[i + 2] - c.at_ns < transient_h * _HOUR_NS
                and math.exp(medians[i + 2] - medians[i]) < min_ratio):
            continue  # a spike that went back down: transient
        p_value = max(min(1.0, _welch(after, before) * max(len(y) - 1, 1)), c.p_bucket)
        if p_value < alpha:
            out.append({"operation": op, "service": service, "span_name": span_name,
                        "change_at": iso_utc(c.at_ns), "before_ms": before_ms, "after_ms": after_ms,
                        "p_value": p_value})
    return out


@click.command("regressions")
@db_option()
@window_options
@click.option("--bucket-minutes", type=click.IntRange(1, 1440), default=60, show_default=True,
              help="Bucket width of the change-point scan.")
@click.option("--min-ratio", type=click.FloatRange(min=1.0), default=1.10, show_default=True,
              help="Smallest reported slow-down (after/before median).")
@click.option("--min-spans", type=click.IntRange(min=2), default=100, show_default=True,
              help="Operations with fewer spans in the window are not judged.")
@click.option("--json", "as_json", is_flag=True, help="Print the SPEC.md JSON list.")
def regressions_command(db: str, since: str | None, until: str | None, bucket_minutes: int,
                        min_ratio: float, min_spans: int, as_json: bool) -> None:
    """Lasting latency step changes per operation (seasonality removed, significance tested)."""
    where, params = prod_scope(since, until)
    with open_store(db, read_only=True) as conn:
        items = find_regressions(conn, where, params, bucket_s=bucket_minutes * 60, min_ratio=min_ratio,
                                 min_spans=min_spans)
    emit(items, as_json, COLUMNS, empty="no regressions")
