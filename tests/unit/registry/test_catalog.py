"""The catalog index: built by one walk, extended by this process's writes, refreshed when
stale without making the caller wait."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis.asyncio

from moorage.registry.catalog import Catalog, FileNames
from moorage.storage.cache.redis import RedisNames
from tests.servers import RedisServer


class Storage:
    """What a walk of storage would find; counts the walks."""

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self.walks = 0

    async def walk(self) -> list[str]:
        self.walks += 1
        await asyncio.sleep(0)
        return list(self.names)


def test_first_call_walks_once_and_sorts() -> None:
    storage = Storage(["b", "a/x", "a"])
    catalog = Catalog(storage.walk)

    async def scenario() -> None:
        first, second = await asyncio.gather(catalog.names(), catalog.names())
        assert first == second == ["a", "a/x", "b"]

    asyncio.run(scenario())
    assert storage.walks == 1


def test_added_names_appear_in_order_without_a_walk() -> None:
    storage = Storage(["m"])
    catalog = Catalog(storage.walk)

    async def scenario() -> None:
        await catalog.names()
        catalog.add("a")
        catalog.add("z")
        catalog.add("m")
        assert await catalog.names() == ["a", "m", "z"]

    asyncio.run(scenario())
    assert storage.walks == 1


def test_stale_list_is_served_while_a_refresh_runs() -> None:
    storage = Storage(["a"])
    catalog = Catalog(storage.walk, refresh=0.0)

    async def scenario() -> None:
        assert await catalog.names() == ["a"]
        storage.names.append("from-another-replica")
        assert await catalog.names() == ["a"]  # answered at once, refresh started
        for _ in range(10):
            await asyncio.sleep(0)
        assert await catalog.names() == ["a", "from-another-replica"]

    asyncio.run(scenario())
    assert storage.walks >= 2


def test_names_added_during_a_refresh_are_kept() -> None:
    storage = Storage(["a"])
    catalog = Catalog(storage.walk, refresh=0.0)

    async def scenario() -> None:
        await catalog.names()
        await catalog.names()  # starts a refresh that will not see "new"
        catalog.add("new")
        for _ in range(10):
            await asyncio.sleep(0)
        assert "new" in await catalog.names()

    asyncio.run(scenario())


def test_replicas_share_names_through_redis(redis_server: RedisServer) -> None:
    """Two catalogs (two replicas) on one real Redis: a name one adds, the other lists."""
    one, two = Storage(["old"]), Storage(["old"])

    async def scenario() -> None:
        first_client = redis.asyncio.Redis.from_url(f"redis://{redis_server.addr}/2")
        second_client = redis.asyncio.Redis.from_url(f"redis://{redis_server.addr}/2")
        try:
            await first_client.flushdb()
            first = Catalog(one.walk, shared=RedisNames(first_client))
            second = Catalog(two.walk, shared=RedisNames(second_client))
            assert await first.names() == ["old"]
            assert await second.names() == ["old"]
            first.add("pushed-to-first")
            for _ in range(50):  # the share happens in the background
                await asyncio.sleep(0.01)
                if "pushed-to-first" in await second.names():
                    break
            assert await second.names() == ["old", "pushed-to-first"]
            assert two.walks == 1  # learnt through Redis, not by walking storage again
        finally:
            await first_client.aclose()
            await second_client.aclose()

    asyncio.run(scenario())


def test_catalog_goes_on_when_the_shared_set_fails() -> None:
    class Broken:
        async def add(self, names: list[str]) -> None:
            raise ConnectionError("redis down")

        async def version(self) -> int:
            raise ConnectionError("redis down")

        async def remove(self, names: list[str]) -> None:
            raise ConnectionError("redis down")

        async def all(self) -> list[str]:
            raise ConnectionError("redis down")

    storage = Storage(["a"])
    catalog = Catalog(storage.walk, shared=Broken())

    async def scenario() -> None:
        assert await catalog.names() == ["a"]
        catalog.add("b")
        await asyncio.sleep(0)
        assert await catalog.names() == ["a", "b"]

    asyncio.run(scenario())


def test_a_removed_name_goes_at_once_and_one_gone_from_storage_at_the_next_walk() -> None:
    storage = Storage(["a", "b", "c"])
    catalog = Catalog(storage.walk, refresh=0.0)

    async def scenario() -> None:
        await catalog.names()
        before = catalog.changes
        storage.names.remove("a")
        await catalog.remove("a")  # deleted by this process
        assert await catalog.names() == ["b", "c"]  # a refresh starts here
        assert catalog.changes > before
        storage.names.remove("c")  # deleted by another process or registry
        for _ in range(10):
            await asyncio.sleep(0)
        assert await catalog.names() == ["b"]

    asyncio.run(scenario())


def test_a_removed_name_goes_and_a_later_walk_does_not_bring_it_back() -> None:
    storage = Storage(["a", "emptied"])
    catalog = Catalog(storage.walk, refresh=0.0)

    async def scenario() -> None:
        assert await catalog.names() == ["a", "emptied"]
        storage.names.remove("emptied")  # what garbage collection does, then tells the catalog
        await catalog.remove("emptied")
        assert await catalog.names() == ["a"]
        for _ in range(10):  # the refreshes started meanwhile
            await asyncio.sleep(0)
        assert await catalog.names() == ["a"]
        catalog.add("emptied")  # pushed to again
        assert await catalog.names() == ["a", "emptied"]

    asyncio.run(scenario())


def test_a_shared_set_does_not_bring_back_a_removed_name() -> None:
    class Shared:
        def __init__(self) -> None:
            self.names = ["gone", "kept"]
            self.changes = 1

        async def add(self, names: list[str]) -> None:
            new = set(names) - set(self.names)
            self.names += sorted(new)
            self.changes += bool(new)

        async def remove(self, names: list[str]) -> None:
            self.names = [name for name in self.names if name not in names]
            self.changes += 1

        async def version(self) -> int:
            return self.changes

        async def all(self) -> list[str]:
            return list(self.names)

    storage = Storage(["gone", "kept"])
    shared = Shared()
    catalog = Catalog(storage.walk, shared=shared)

    async def scenario() -> None:
        assert await catalog.names() == ["gone", "kept"]
        await catalog.remove("gone")
        await shared.add(["new-elsewhere"])  # another replica pushes
        assert await catalog.names() == ["kept", "new-elsewhere"]

    asyncio.run(scenario())


def test_a_name_gone_from_storage_leaves_at_the_next_refresh() -> None:
    """Removed by another process (`moorage garbage-collect`): the walk is what counts."""
    storage = Storage(["a", "b"])
    catalog = Catalog(storage.walk, refresh=0.0)

    async def scenario() -> None:
        assert await catalog.names() == ["a", "b"]
        storage.names.remove("b")
        await catalog.names()
        for _ in range(10):
            await asyncio.sleep(0)
        assert await catalog.names() == ["a"]

    asyncio.run(scenario())


def test_workers_share_removals_through_their_file(tmp_path: Path) -> None:
    one, two = Storage(["a", "b"]), Storage(["a", "b"])

    async def scenario() -> None:
        first = Catalog(one.walk, shared=FileNames(str(tmp_path / "names")))
        second = Catalog(two.walk, shared=FileNames(str(tmp_path / "names")))
        assert await first.names() == await second.names() == ["a", "b"]
        await first.remove("b")
        assert await second.names() == ["a"]
        second.add("b")  # made again in the other worker
        await asyncio.sleep(0)
        assert await first.names() == ["a", "b"]
        second.add("c")
        await asyncio.sleep(0)
        assert await first.names() == ["a", "b", "c"]
        await second.remove("c")
        assert await first.names() == ["a", "b"]
        assert await FileNames(str(tmp_path / "names")).all() == ["a", "b"]

    asyncio.run(scenario())


def test_replicas_share_removals_through_redis(redis_server: RedisServer) -> None:
    one, two = Storage(["kept", "emptied"]), Storage(["kept", "emptied"])

    async def scenario() -> None:
        clients = [redis.asyncio.Redis.from_url(f"redis://{redis_server.addr}/2") for _ in "12"]
        try:
            await clients[0].flushdb()
            first = Catalog(one.walk, shared=RedisNames(clients[0]))
            second = Catalog(two.walk, shared=RedisNames(clients[1]), refresh=0.0)
            assert await first.names() == await second.names() == ["emptied", "kept"]
            # The second replica's refresh walked before the name went from storage: its walk
            # must not bring the name back into the shared set.
            walking = asyncio.Event()
            resume = asyncio.Event()

            async def slow_walk() -> list[str]:
                listed = list(two.names)
                walking.set()
                await resume.wait()
                return listed

            second._walk = slow_walk
            await second.names()  # starts the refresh
            await walking.wait()
            one.names.remove("emptied")
            two.names.remove("emptied")
            await first.remove("emptied")
            resume.set()
            for _ in range(20):
                await asyncio.sleep(0.01)
            assert await second.names() == ["kept"]
            assert await first.names() == ["kept"]
        finally:
            for client in clients:
                await client.aclose()

    asyncio.run(scenario())
