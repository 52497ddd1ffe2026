"""Properties of an upload chunk's `Content-Range` (with its `Content-Length`), as the PATCH and
PUT handlers read it: any pair of headers gives the chunk's start and length, or RangeInvalid
(416, the session left as it was), never another exception; and only ASCII `start-end` forms
(`bytes start-end/total`, `bytes=start-end/*`) with end >= start are read, as they say.

The requests are aiohttp's own test requests, with the headers a client sent; the session is a
real one on the in-memory driver."""

from __future__ import annotations

import asyncio
import re

from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from moorage.api.uploads import _content_range
from moorage.registry.errors import RangeInvalid
from moorage.registry.repository import Registry
from moorage.storage.driver import create
from tests.strategies import content_range_headers

CONTENT_RANGE = re.compile(r"[ \t]*(?:bytes[ =])?([0-9]+)-([0-9]+)(?:/(?:[0-9]+|\*))?[ \t]*")


def read(content_range: str | None, content_length: str | None) -> tuple[int | None, int | None]:
    headers = {}
    if content_range is not None:
        headers["Content-Range"] = content_range
    if content_length is not None:
        headers["Content-Length"] = content_length

    async def run() -> tuple[int | None, int | None]:
        repo = Registry(create("inmemory", {})).repository("props/uploads")
        upload_id = await repo.uploads.start("sha256")
        request = make_mocked_request("PATCH", f"/v2/props/uploads/blobs/uploads/{upload_id}",
                                      headers=headers)  # fmt: skip
        return await _content_range(request, repo, upload_id)

    return asyncio.run(run())


# Content-Length as aiohttp's HTTP parser lets it through to a handler
content_lengths = st.integers(0, 2**64).map(str)


@given(content_range_headers() | st.none(), content_lengths | st.none())
def test_a_content_range_is_read_as_written_or_refused(
    content_range: str | None, content_length: str | None
) -> None:
    try:
        start, length = read(content_range, content_length)
    except RangeInvalid as exc:
        assert content_range is not None
        assert exc.size == 0  # the empty session's size, for the client to resume from
        return
    if content_range is None:
        assert start is None
        assert length == (int(content_length) if content_length is not None else None)
        return
    match = CONTENT_RANGE.fullmatch(content_range)
    assert match is not None, f"{content_range!r} read as {start}, {length}"
    first, last = int(match.group(1)), int(match.group(2))
    assert (start, length) == (first, last - first + 1)
    assert content_length is None or int(content_length) == length


@given(st.integers(0, 2**63), st.integers(0, 2**20), st.booleans())
def test_a_well_formed_chunk_is_read(start: int, length: int, with_length: bool) -> None:
    header = f"{start}-{start + length}"
    assert read(header, str(length + 1) if with_length else None) == (start, length + 1)
