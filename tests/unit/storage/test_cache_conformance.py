"""The blob descriptor cache contract (moorage.storage.cache.base), run against every registered
cache. A new cache joins by registering itself: add its options to `_options` if it needs any."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from moorage.registry.digest import Digest
from moorage.storage.cache import BlobDescriptorCache, CachedBlob, MeasuredCache, create, registered

A = Digest.of(b"a")
B = Digest.of(b"b")
A512 = Digest.of(b"a", "sha512")


def _options(name: str) -> dict[str, Any]:
    return {"size": 100}


@pytest.fixture(params=registered())
def cache(request: pytest.FixtureRequest) -> BlobDescriptorCache:
    return create(request.param, _options(request.param))


def test_every_builtin_cache_is_registered() -> None:
    assert "inmemory" in registered()


def test_unknown_entries_are_misses(cache: BlobDescriptorCache) -> None:
    assert asyncio.run(cache.get(None, A)) is None
    assert asyncio.run(cache.get("repo", A)) is None


def test_set_then_get_per_scope(cache: BlobDescriptorCache) -> None:
    async def scenario() -> None:
        await cache.set(None, A, CachedBlob(A, 1))
        await cache.set("one", A512, CachedBlob(A, 1))
        assert await cache.get(None, A) == CachedBlob(A, 1)
        assert await cache.get("one", A512) == CachedBlob(A, 1)
        # Scopes never leak into each other: a link in one repository says nothing of another.
        assert await cache.get("two", A512) is None
        assert await cache.get(None, A512) is None
        assert await cache.get("one", A) is None

    asyncio.run(scenario())


def test_forget_drops_only_that_entry(cache: BlobDescriptorCache) -> None:
    async def scenario() -> None:
        await cache.set("one", A, CachedBlob(A, 1))
        await cache.set("one", B, CachedBlob(B, 1))
        await cache.set(None, A, CachedBlob(A, 1))
        await cache.forget("one", A)
        assert await cache.get("one", A) is None
        assert await cache.get("one", B) == CachedBlob(B, 1)
        assert await cache.get(None, A) == CachedBlob(A, 1)
        await cache.forget("one", A)  # forgetting what is not there is no error

    asyncio.run(scenario())


def test_set_replaces(cache: BlobDescriptorCache) -> None:
    async def scenario() -> None:
        await cache.set(None, A, CachedBlob(A, 1))
        await cache.set(None, A, CachedBlob(A, 2))
        assert await cache.get(None, A) == CachedBlob(A, 2)

    asyncio.run(scenario())


def test_inmemory_cache_is_bounded_and_evicts_least_recent() -> None:
    cache = create("inmemory", {"size": 2})

    async def scenario() -> None:
        await cache.set(None, A, CachedBlob(A, 1))
        await cache.set(None, B, CachedBlob(B, 1))
        await cache.get(None, A)  # A is now the most recently used
        await cache.set(None, A512, CachedBlob(A, 1))
        assert await cache.get(None, B) is None
        assert await cache.get(None, A) is not None
        assert await cache.get(None, A512) is not None

    asyncio.run(scenario())


def test_measured_cache_counts_hits_and_misses() -> None:
    seen: list[tuple[str, bool]] = []
    cache = MeasuredCache(create("inmemory", {}), lambda name, hit: seen.append((name, hit)))

    async def scenario() -> None:
        await cache.get(None, A)
        await cache.set(None, A, CachedBlob(A, 1))
        await cache.get(None, A)

    asyncio.run(scenario())
    assert seen == [("inmemory", False), ("inmemory", True)]
