"""Capped output (hypothesis): memory bounded by the cap, size and sha256 always of the whole output,
head and tail exactly the first and last bytes."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from otel_chronograph.exec._output import CappedOutput


@given(st.integers(64, 400), st.lists(st.binary(max_size=300), max_size=30))
def test_head_tail_size_and_hash(cap: int, chunks: list[bytes]) -> None:
    out = CappedOutput(cap)
    for chunk in chunks:
        out.feed(chunk)
        assert len(out.kept()[0]) + len(out.kept()[1]) <= cap + 0  # never more than the cap is kept
    whole = b"".join(chunks)
    assert out.size == len(whole)
    assert out.sha256 == hashlib.sha256(whole).hexdigest()
    head, tail = out.kept()
    if len(whole) <= cap:
        assert not out.truncated and head == whole and tail == b""
        assert out.text() == whole.decode("utf-8", "replace")
    else:
        assert out.truncated
        assert head == whole[:cap // 2] and tail == whole[-(cap - cap // 2):]
        assert f"{len(whole) - cap} of {len(whole)} bytes cut" in out.text()


def test_memory_stays_bounded_for_a_large_output() -> None:
    out = CappedOutput(1024)
    chunk = b"x" * 65536
    for _ in range(200):  # 13 MB through a 1 KiB cap
        out.feed(chunk)
        assert sum(map(len, out._tail)) <= 512 + 65536
    assert out.size == 200 * 65536 and len(out.kept()[1]) == 512
