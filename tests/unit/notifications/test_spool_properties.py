"""The inbox reader's fast path (spool._records: whole records split at once) against its
record-by-record walk, on any bytes a writer can leave: whole records, records with bytes not
written yet (zeros), torn ones, garbage."""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from moorage.notifications import spool

# what an inbox holds is records (\x1e, a line, \n) among zeros and torn pieces: these pieces
# make every arrangement of those bytes likely
PIECES = st.sampled_from(
    [b"\x1e", b"\n", b"\x00", b"\t", b"=1\tpart", b"\t17\t0\tid\tGET\t1", b"\t1\x00\t"]
)
BODIES = st.sampled_from([b"\t1\t0\ta\tGET\t1", b"=0\tx"])
RECORD = st.builds(lambda body: b"\x1e" + body + b"\n", BODIES)


@given(st.lists(st.one_of(RECORD, RECORD, PIECES), max_size=30))
@example([b"\x1ea\x00\n", b"\x1eb\n"])  # a record with a byte not written yet, then one whole
def test_the_fast_path_finds_what_the_walk_finds(parts: list[bytes]) -> None:
    data = b"".join(parts)
    assert spool._records(data, complete_end=False) == spool._records_walked(data, False)


@given(st.lists(RECORD, min_size=1, max_size=30), st.integers(0, 40))
def test_whole_records_before_unwritten_bytes_are_all_taken(
    records: list[bytes], unwritten: int
) -> None:
    data = b"".join(records) + b"\x00" * unwritten
    found, used = spool._records(data, complete_end=False)
    assert found == [record[1:-1] for record in records]
    assert used == len(data) - unwritten
