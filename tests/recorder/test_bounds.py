"""Issue 9 item 8, the recorder's side: what one flight record may hold is bounded, in memory and on
disk. The engine already cuts single values (4,096 characters, 64 attributes per event); but 200
events of 64 such values still make a 50 MB record, and names (command, spans, events, sectors) are
not cut at all. The recorder keeps names to MAX_NAME_CHARS and a record's event details to
MAX_DETAILS_CHARS; every cut is marked where it happened and counted."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from otel_chronograph import Lap, LapEvent, SectorSpan
from otel_chronograph.recorder import FlightStore, decode_lap, encode_lap
from otel_chronograph.recorder._record import DETAILS_DROPPED, MAX_DETAILS_CHARS, MAX_NAME_CHARS, bounded_lap

from .helpers import synthetic_lap

# What the engine lets through (200 events, max_events_per_lap, of 64 attributes) with 1 KB values.
WIDE = {f"k{j}": "v" * 1024 for j in range(64)}


def hostile_lap(i: int = 1) -> Lap:
    lap = synthetic_lap(i)
    long_name = "n" * 100_000
    events = [LapEvent(f"event {k}", lap.start_ns + k, k / 1e6, "init", "init", dict(WIDE))
              for k in range(200)]
    events.append(LapEvent(long_name, lap.start_ns, 0.0, long_name, long_name, {}))
    spans = [*lap.spans, SectorSpan(long_name, long_name, "00000000000000ff", lap.span_id, lap.start_ns,
                                    lap.end_ns)]
    return replace(lap, command="c" * 100_000, events=events, spans=spans, session_id="s" * 100_000,
                   sectors={**lap.sectors, long_name: 1.0},
                   critical_path={**lap.critical_path, long_name: 1.0})


def test_a_huge_record_is_cut_marked_and_counted_in_memory_and_on_disk(tmp_path: Path) -> None:
    db = tmp_path / "f.db"
    with FlightStore(db) as store:
        store.add(hostile_lap())
        assert store.flush()
        assert store.truncated == 1
        kept = store.recent_laps(1)[0]  # the in-memory copy is the bounded one too
    doc = encode_lap(kept)
    assert len(doc.encode()) < 2 * MAX_DETAILS_CHARS, len(doc)
    with FlightStore(db, read_only=True) as store:
        (lap,) = store.recent_laps(1)
    assert encode_lap(lap) == doc
    assert len(lap.command) < MAX_NAME_CHARS + 40 and "truncated 99" in lap.command
    assert lap.session_id is not None and len(lap.session_id) < MAX_NAME_CHARS + 40
    assert all(len(name) < MAX_NAME_CHARS + 40 for name in (*lap.sectors, *lap.critical_path))
    assert all(len(s.name) < MAX_NAME_CHARS + 40 and len(s.sector or "") < MAX_NAME_CHARS + 40
               for s in lap.spans)
    assert len(lap.events) == 201  # every milestone stays on the timeline ...
    assert lap.events[0].attributes == WIDE  # ... the first ones with their details ...
    assert DETAILS_DROPPED in lap.events[-2].attributes  # ... later ones without (marked)
    assert lap.events[-1].attributes == {} and lap.truncated


def test_ordinary_records_are_kept_as_they_are(tmp_path: Path) -> None:
    lap = synthetic_lap(7)
    assert bounded_lap(lap) is lap
    with FlightStore(tmp_path / "f.db") as store:
        store.add(lap)
        store.flush()
        assert store.truncated == 0
    with FlightStore(tmp_path / "f.db", read_only=True) as store:
        assert encode_lap(store.recent_laps(1)[0]) == encode_lap(lap)


texts = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=3000)
values = st.one_of(texts, st.integers(), st.floats(allow_nan=False), st.booleans(),
                   st.lists(st.text(max_size=300), max_size=20).map(tuple))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(texts, st.dictionaries(st.text(max_size=50), values, max_size=30)), max_size=60),
       texts, texts)
def test_any_lap_is_bounded_and_bounding_is_stable(events: list[tuple[str, dict[str, object]]],
                                                   command: str, span_name: str) -> None:
    base = synthetic_lap(3)
    lap = replace(base, command=command, events=[
        LapEvent(name, base.start_ns, 0.0, None, span_name, attrs) for name, attrs in events])
    bounded = bounded_lap(lap)
    doc = encode_lap(bounded)
    # JSON may double a character (quotes, backslashes); names are cut; details have a budget.
    assert len(doc) <= 2 * (MAX_DETAILS_CHARS + (len(events) + 1) * 3 * (MAX_NAME_CHARS + 40)) + 4096
    assert bounded_lap(bounded) is bounded  # nothing left to cut
    assert encode_lap(decode_lap(doc)) == doc
    assert (bounded is lap) == (len(command) <= MAX_NAME_CHARS and len(span_name) <= MAX_NAME_CHARS
                                and all(len(name) <= MAX_NAME_CHARS for name, _ in events)
                                and not bounded.truncated)


def test_a_derived_lap_is_checked_from_its_compact_rows_and_cut_like_any_other() -> None:
    """The engine keeps a lap's span rows as tuples until they are read; the bound check reads those
    (without making SectorSpans) and still finds long span and sector names."""
    import gc
    import weakref

    from otel_chronograph.recorder import FlightStore

    from ..core.helpers import ROOT_ID, deriver, mk, root

    long_name = "n" * 1000
    for names, cut in (((long_name, None), True), (("q", long_name), True), (("q", "s"), False)):
        span_name, sector = names
        spans = [mk(span_name, 1, ROOT_ID, 1, 2, attributes={"chronograph.sector": sector} if sector else {})]
        ref = weakref.ref(spans[0])
        lap = deriver().derive(root(0, 10), spans)
        del spans
        store = FlightStore()
        store.add(lap)
        kept = store.recent_laps(1)[0]
        assert (kept is not lap) == cut and store.truncated == int(cut)
        if not cut:
            assert lap.spans.compact() is not None  # type: ignore[attr-defined]  # rows not made ...
            gc.collect()
            assert ref() is None  # ... and the span let go of
        assert all(len(s.name) < MAX_NAME_CHARS + 40 and len(s.sector or "") < MAX_NAME_CHARS + 40
                   for s in kept.spans)
        assert [s.name[:1] for s in kept.spans] == [span_name[:1]]


def test_a_lap_document_is_the_same_from_compact_rows_and_from_span_rows() -> None:
    """The SQLite writer encodes laps whose rows were never made into SectorSpans from the tuples:
    the document is the one the SectorSpans give (flat and nested laps, an id over 16 hex digits)."""
    from ..core.helpers import ROOT_ID, deriver, mk, root, sec

    for spans in ([sec("a", 1, ROOT_ID, 1, 5), mk("q", 2, ROOT_ID, 2, 3)],
                  [sec("a", 1, ROOT_ID, -1, 5), mk("q", 2**64 + 5, 1, 2, 3), mk("r", 3, None, 4, 20)]):
        lap = deriver().derive(root(0, 10), spans)
        assert lap.spans.compact() is not None  # type: ignore[attr-defined]
        compact_doc = encode_lap(lap)
        assert lap.spans.compact() is not None  # type: ignore[attr-defined]  # still not made
        assert list(lap.spans)  # made now
        assert encode_lap(lap) == compact_doc
        assert decode_lap(compact_doc).spans == list(lap.spans)


near_limit = st.integers(0, 2).flatmap(
    lambda k: st.sampled_from((0, 1, MAX_NAME_CHARS - 1, MAX_NAME_CHARS, MAX_NAME_CHARS + 1)) if k
    else st.integers(0, MAX_NAME_CHARS + 2))


@settings(max_examples=200, deadline=None)
@given(spans=st.lists(st.tuples(near_limit, st.one_of(st.none(), near_limit)), max_size=6),
       command=near_limit, session=st.one_of(st.none(), near_limit), nested=st.booleans(),
       made=st.sampled_from(("compact", "made", "list")))
def test_the_bound_check_on_compact_rows_finds_what_a_name_by_name_check_finds(
        spans: list[tuple[int, int | None]], command: int, session: int | None, nested: bool,
        made: str) -> None:
    """The bound check reads a derived lap's names in C-level passes over its compact rows (or over
    SectorSpans once made, or a plain list): a lap is kept as it is exactly when every name fits."""
    from ..core.helpers import ROOT_ID, deriver, mk, root

    records = [mk("n" * n, i + 1, i if nested and i else ROOT_ID, i, i + 1,
                  attributes={"chronograph.sector": "s" * s} if s is not None else {})
               for i, (n, s) in enumerate(spans)]
    attrs = {"session.id": "x" * session} if session is not None else {}
    lap = deriver().derive(root(0, 10, command="c" * command, attributes=attrs), records)
    if made == "made":
        list(lap.spans)
    elif made == "list":
        lap = replace(lap, spans=list(lap.spans))
    fits = all(len(name) <= MAX_NAME_CHARS for name in (
        lap.command, *(lap.session_id or "",), *lap.sectors, *lap.critical_path,
        *(s.name for s in lap.spans), *(s.sector or "" for s in lap.spans)))
    bounded = bounded_lap(lap)
    assert (bounded is lap) == fits
    assert bounded_lap(bounded) is bounded
