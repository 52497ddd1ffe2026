"""The blob descriptor cache contract (moorage.storage.cache.base), run against every registered
cache. A new cache joins by registering itself: add its options to `_options` if it needs any."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

import pytest

from moorage.config.schema import Redis
from moorage.registry.digest import Digest
from moorage.storage.cache import BlobDescriptorCache, CachedBlob, MeasuredCache, create, registered
from moorage.storage.cache.redis import RedisCache
from tests.servers import RedisServer

T = TypeVar("T")
A = Digest.of(b"a")
B = Digest.of(b"b")
A512 = Digest.of(b"a", "sha512")


def _options(name: str, request: pytest.FixtureRequest) -> dict[str, Any]:
    if name == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return {"redis": Redis(addr=server.addr, db=1)}
    return {"size": 100}


@pytest.fixture(params=registered())
def cache(request: pytest.FixtureRequest) -> BlobDescriptorCache:
    created = create(request.param, _options(request.param, request))
    if isinstance(created, RedisCache):
        run(created, created.flush())  # an empty cache for every test
    return created


def run(cache: BlobDescriptorCache, coroutine: Awaitable[T]) -> T:
    """Runs a scenario in its own event loop, releasing the cache's connections after."""

    async def main() -> T:
        try:
            return await coroutine
        finally:
            await cache.close()

    return asyncio.run(main())


def test_every_builtin_cache_is_registered() -> None:
    assert {"inmemory", "redis"} <= set(registered())


def test_unknown_entries_are_misses(cache: BlobDescriptorCache) -> None:
    assert run(cache, cache.get(None, A)) is None
    assert run(cache, cache.get("repo", A)) is None


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

    run(cache, scenario())


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

    run(cache, scenario())


def test_set_replaces(cache: BlobDescriptorCache) -> None:
    async def scenario() -> None:
        await cache.set(None, A, CachedBlob(A, 1))
        await cache.set(None, A, CachedBlob(A, 2))
        assert await cache.get(None, A) == CachedBlob(A, 2)

    run(cache, scenario())


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

    run(cache, scenario())


def test_measured_cache_counts_hits_and_misses() -> None:
    seen: list[tuple[str, bool]] = []
    cache = MeasuredCache(create("inmemory", {}), lambda name, hit: seen.append((name, hit)))

    async def scenario() -> None:
        await cache.get(None, A)
        await cache.set(None, A, CachedBlob(A, 1))
        await cache.get(None, A)

    run(cache, scenario())
    assert seen == [("inmemory", False), ("inmemory", True)]
