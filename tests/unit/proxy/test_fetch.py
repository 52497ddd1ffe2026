"""Blob fetches against a registry peer, into a registry on the in-memory driver: shared by every
reader whenever it joins, verified before the last byte, stored only whole and right."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable

import pytest

from moorage.proxy.fetch import GROUP, Fetch, Fetches, Source
from moorage.proxy.upstream import Upstream
from moorage.registry.digest import Digest
from moorage.registry.errors import BlobUnknown, Unavailable
from moorage.registry.repository import Registry
from moorage.storage import driver as drivers
from tests.unit.proxy.peers import Peer, serving

SIZE = 3 * GROUP + 12345
CONTENT = os.urandom(SIZE)
DIGEST = Digest.of(CONTENT)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(scenario())


class Harness:
    """A registry, an upstream client of the peer, and the fetches between them."""

    def __init__(self, peer: Peer) -> None:
        self.peer = peer
        self.registry = Registry(drivers.create("inmemory", {}))
        self.upstream = Upstream(peer.url)
        self.fetches = Fetches()
        self.stored: list[Digest] = []

    async def join(self, digest: Digest = DIGEST) -> Fetch:
        async def open_() -> Source:
            response, size = await self.upstream.open_blob("library/app", digest, BlobUnknown)
            return Source(response, size, self.upstream.shown)

        async def stored(size: int) -> None:
            assert size == len(self.peer.blobs[str(digest)])
            self.stored.append(digest)

        return await self.fetches.join(
            ("library/app", digest), digest, open_, self.registry.blobs, stored
        )

    async def close(self) -> None:
        await self.fetches.close()
        await self.upstream.close()


async def read(fetch: Fetch, offset: int = 0) -> bytes:
    received = bytearray()
    async for chunk in fetch.chunks(offset):
        received += chunk
    return bytes(received)


def test_readers_joining_at_any_time_share_one_upstream_fetch() -> None:
    async def scenario() -> None:
        peer = Peer(hold_after=GROUP + 1)
        peer.blobs[str(DIGEST)] = CONTENT
        async with serving(peer):
            harness = Harness(peer)
            try:
                first = await harness.join()
                early = asyncio.ensure_future(read(first))
                await asyncio.wait_for(peer.held.wait(), 30)  # the upstream is midway
                second = await harness.join()
                assert second is first
                from_the_middle = asyncio.ensure_future(read(second, 1000))
                peer.resume.set()
                assert await early == CONTENT
                assert await from_the_middle == CONTENT[1000:]
                assert peer.asked[f"GET /v2/library/app/blobs/{DIGEST}"] == 1
                assert harness.stored == [DIGEST]
                assert await harness.registry.blobs.get(DIGEST) == CONTENT
                # Done: the next request is the store's, not a fetch's.
                assert harness.fetches.running(("library/app", DIGEST)) is None
            finally:
                await harness.close()

    run(scenario)


def test_content_that_does_not_match_its_digest_is_never_whole_nor_stored() -> None:
    async def scenario() -> None:
        peer = Peer(corrupt=True)
        peer.blobs[str(DIGEST)] = CONTENT
        async with serving(peer):
            harness = Harness(peer)
            try:
                fetch = await harness.join()
                received = bytearray()
                with pytest.raises(Unavailable, match="does not match"):
                    async for chunk in fetch.chunks(0):
                        received += chunk
                assert len(received) < SIZE  # the last byte waits for the digest
                assert not await harness.registry.blobs.exists(DIGEST)
                assert harness.stored == []
            finally:
                await harness.close()

    run(scenario)


def test_an_upstream_cut_midway_fails_every_reader_and_stores_nothing() -> None:
    async def scenario() -> None:
        peer = Peer(cut_after=2 * GROUP)
        peer.blobs[str(DIGEST)] = CONTENT
        async with serving(peer):
            harness = Harness(peer)
            try:
                fetch = await harness.join()
                readers = [asyncio.ensure_future(read(fetch, offset)) for offset in (0, 10)]
                for reader in readers:
                    with pytest.raises(Unavailable, match="failed after"):
                        await reader
                assert not await harness.registry.blobs.exists(DIGEST)
                assert harness.stored == []
                # Nothing is left running: the next request fetches again, whole this time.
                peer.cut_after = None
                assert await read(await harness.join()) == CONTENT
                assert await harness.registry.blobs.exists(DIGEST)
            finally:
                await harness.close()

    run(scenario)


def test_an_unknown_blob_fails_every_request_waiting_and_is_asked_again_later() -> None:
    async def scenario() -> None:
        peer = Peer()
        async with serving(peer):
            harness = Harness(peer)
            try:
                results = await asyncio.gather(
                    harness.join(), harness.join(), return_exceptions=True
                )
                assert all(isinstance(result, BlobUnknown) for result in results), results
                assert peer.asked[f"GET /v2/library/app/blobs/{DIGEST}"] == 1
                with pytest.raises(BlobUnknown):
                    await harness.join()
                assert peer.asked[f"GET /v2/library/app/blobs/{DIGEST}"] == 2
            finally:
                await harness.close()

    run(scenario)


def test_a_blob_of_another_algorithm_is_streamed_not_stored() -> None:
    async def scenario() -> None:
        digest = Digest.of(CONTENT, "sha512")
        peer = Peer()
        peer.blobs[str(digest)] = CONTENT
        async with serving(peer):
            harness = Harness(peer)
            try:
                assert await read(await harness.join(digest)) == CONTENT
                assert harness.stored == []
                assert not await harness.registry.blobs.exists(DIGEST)
            finally:
                await harness.close()

    run(scenario)


def test_an_empty_blob() -> None:
    async def scenario() -> None:
        digest = Digest.of(b"")
        peer = Peer()
        peer.blobs[str(digest)] = b""
        async with serving(peer):
            harness = Harness(peer)
            try:
                assert await read(await harness.join(digest)) == b""
                assert harness.stored == [digest]
            finally:
                await harness.close()

    run(scenario)
