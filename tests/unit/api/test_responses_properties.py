"""Properties of `Range` parsing for blob GETs (`parse_range`): any header and any blob size
give the whole blob (None), a satisfiable byte range inside the blob, or BlobRangeNotSatisfiable
(416), never another exception; and what is served is what the header asked, by RFC 9110's
grammar (ASCII digits only)."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from moorage.api.responses import parse_range
from moorage.registry.errors import BlobRangeNotSatisfiable
from tests.strategies import range_headers

sizes = st.integers(0, 1 << 20) | st.sampled_from([1, 2**31, 2**40, 2**63 - 1])
# a single byte range (RFC 9110 section 14.1.2), with the optional whitespace around the value
SINGLE_RANGE = re.compile(r"[ \t]*bytes=([0-9]*)-([0-9]*)[ \t]*")


@given(range_headers() | st.none(), sizes)
def test_a_range_is_whole_inside_or_not_satisfiable(header: str | None, size: int) -> None:
    try:
        selected = parse_range(header, size)
    except BlobRangeNotSatisfiable as exc:
        assert exc.size == size
        return
    if selected is None:
        return
    first, last = selected
    assert 0 <= first <= last < size
    match = SINGLE_RANGE.fullmatch(header or "")
    assert match is not None, f"{header!r} served as {selected}"
    first_text, last_text = match.groups()
    if first_text:
        assert first == int(first_text)
        assert last == (min(int(last_text), size - 1) if last_text else size - 1)
    else:
        assert (first, last) == (max(0, size - int(last_text)), size - 1)


@given(st.integers(1, 2**63 - 1).flatmap(lambda size: st.tuples(
    st.just(size), st.integers(0, size - 1), st.integers(0, 2**64)
)))  # fmt: skip
def test_a_satisfiable_range_is_served(case: tuple[int, int, int]) -> None:
    size, first, extra = case
    assert parse_range(f"bytes={first}-{first + extra}", size) == (
        first,
        min(first + extra, size - 1),
    )
    assert parse_range(f"bytes={first}-", size) == (first, size - 1)
    assert parse_range(f"bytes=-{extra + 1}", size) == (max(0, size - extra - 1), size - 1)
