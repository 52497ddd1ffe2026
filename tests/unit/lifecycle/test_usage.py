"""Usage from two walks of a real (in-memory) storage tree written by the registry services:
exclusive, shared and total bytes per repository, the registry's total counting each blob once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from moorage.lifecycle.usage import RepositoryUsage, Usage, UsageTracker, compute, human
from moorage.registry.digest import Digest
from moorage.registry.repository import Registry
from moorage.storage import driver as drivers
from moorage.storage import paths
from tests.unit.lifecycle.support import CONFIG_SIZE, push_blob, push_image


def test_exclusive_shared_and_total() -> None:
    async def scenario() -> Usage:
        registry = Registry(drivers.create("inmemory", {}), deletes=True)
        base, own_a, own_b = b"b" * 1000, b"a" * 300, b"c" * 50
        size_a = await push_image(registry, "team/a", "v1", [base, own_a])
        size_b = await push_image(registry, "team/b", "v1", [base, own_b])
        await push_blob(registry, "loose", b"l" * 7)
        # garbage: content that no repository links any more
        await push_blob(registry, "gone", b"g" * 9999)
        await registry.repository("gone").blobs.delete(Digest.of(b"g" * 9999))
        usage = await compute(registry.driver)
        shared = 1000 + CONFIG_SIZE
        assert usage.repositories["team/a"] == RepositoryUsage("team/a", 300 + size_a, shared)
        assert usage.repositories["team/b"] == RepositoryUsage("team/b", 50 + size_b, shared)
        assert usage.total == 1000 + CONFIG_SIZE + 300 + 50 + size_a + size_b + 7
        return usage

    usage = asyncio.run(scenario())
    assert list(usage.repositories) == ["loose", "team/a", "team/b"]  # "gone" links nothing
    assert usage.of("loose").total == 7
    assert usage.of("nothing") == RepositoryUsage("nothing", 0, 0)
    assert usage.blobs == 7


def test_a_blob_linked_twice_in_one_repository_is_counted_once() -> None:
    async def scenario() -> Usage:
        registry = Registry(drivers.create("inmemory", {}))
        data = b"x" * 100
        await push_blob(registry, "r", data)
        await push_blob(registry, "r", data, "sha512")  # linked again, under its sha512 too
        await registry.repository("q").blobs.mount(Digest.of(data), None)
        return await compute(registry.driver)

    usage = asyncio.run(scenario())
    assert usage.repositories == {
        "q": RepositoryUsage("q", 0, 100),
        "r": RepositoryUsage("r", 0, 100),
    }
    assert usage.total == 100


def test_a_link_without_content_counts_nothing() -> None:
    async def scenario() -> Usage:
        registry = Registry(drivers.create("inmemory", {}))
        data = b"y" * 10
        await push_blob(registry, "r", data)
        await registry.driver.delete(paths.blob_dir(Digest.of(data)))
        return await compute(registry.driver)

    usage = asyncio.run(scenario())
    assert (usage.repositories, usage.total) == ({}, 0)


def test_an_empty_root() -> None:
    usage = asyncio.run(compute(drivers.create("inmemory", {})))
    assert usage.to_json() == {"repositories": [], "total": 0}


def test_what_dumps_writes_loads_reads() -> None:
    usage = Usage({"a": RepositoryUsage("a", 1, 2)}, 3, 1000.5, 0.25, 2)
    assert Usage.loads(usage.dumps()) == usage
    assert usage.to_json(["a", "b"]) == {
        "repositories": [
            {"name": "a", "exclusive": 1, "shared": 2, "total": 3},
            {"name": "b", "exclusive": 0, "shared": 0, "total": 0},
        ],
        "total": 3,
    }


def test_workers_follow_the_computing_one(tmp_path: Path) -> None:
    shared = str(tmp_path / "usage.json")

    async def scenario() -> None:
        registry = Registry(drivers.create("inmemory", {}))
        computing = UsageTracker(registry.driver, 3600, shared=shared)
        following = UsageTracker(registry.driver, 3600, computes=False, shared=shared)
        assert not following.load()  # nothing computed yet
        await push_blob(registry, "r", b"z" * 10)
        await computing.refresh()
        assert following.load()
        assert following.current == computing.current
        assert not following.load()  # unchanged: not read again
        task = asyncio.create_task(following.run())
        await push_blob(registry, "r", b"w" * 5)
        await computing.refresh()
        for _ in range(50):
            if following.current.of("r").total == 15:
                break
            await asyncio.sleep(0.1)
        task.cancel()
        assert following.current.of("r").total == 15

    asyncio.run(scenario())


def test_human_sizes() -> None:
    assert [human(n) for n in (0, 1023, 1024, 1536, 10 * 1024**3)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "1.5 KiB",
        "10.0 GiB",
    ]
