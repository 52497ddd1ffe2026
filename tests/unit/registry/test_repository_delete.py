"""Deleting a whole repository and reading tags' push times, through the registry services on
the in-memory and filesystem drivers."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from moorage.registry.errors import ManifestUnknown, NameUnknown, Unsupported
from moorage.registry.repository import Registry
from moorage.storage import driver as drivers
from moorage.storage import paths
from tests.unit.lifecycle.support import push_image


def registries(tmp_path: Path) -> list[Registry]:
    return [
        Registry(drivers.create("inmemory", {}), deletes=True),
        Registry(drivers.create("filesystem", {"rootdirectory": str(tmp_path)}), deletes=True),
    ]


@pytest.mark.parametrize("which", [0, 1], ids=["inmemory", "filesystem"])
def test_a_repository_goes_whole_and_a_nested_one_stays(tmp_path: Path, which: int) -> None:
    registry = registries(tmp_path)[which]

    async def scenario() -> None:
        await push_image(registry, "team/app", "v1", [b"layer"])
        await push_image(registry, "team/app/db", "v1", [b"db layer"])
        assert await registry.repositories() == ["team/app", "team/app/db"]
        await registry.repository("team/app").delete()
        assert await registry.repositories() == ["team/app/db"]
        assert await registry.walk(paths.REPOSITORY_MARKER) == ["team/app/db"]
        gone = registry.repository("team/app")
        assert not await gone.exists()
        with pytest.raises(ManifestUnknown):
            await gone.manifests.get("v1")
        with pytest.raises(NameUnknown):
            await gone.delete()
        nested = registry.repository("team/app/db")
        assert await nested.tags.all() == ["v1"]
        await nested.manifests.get("v1")
        # pushed again, it is back
        await push_image(registry, "team/app", "v2", [b"layer"])
        assert await registry.repositories() == ["team/app", "team/app/db"]

    asyncio.run(scenario())


def test_deletes_disabled_refuse_it() -> None:
    registry = Registry(drivers.create("inmemory", {}))

    async def scenario() -> None:
        await push_image(registry, "team/app", "v1", [b"layer"])
        with pytest.raises(Unsupported):
            await registry.repository("team/app").delete()
        assert await registry.repository("team/app").exists()

    asyncio.run(scenario())


@pytest.mark.parametrize("which", [0, 1], ids=["inmemory", "filesystem"])
def test_push_times(tmp_path: Path, which: int) -> None:
    registry = registries(tmp_path)[which]
    tags = registry.repository("team/app").tags

    async def scenario() -> None:
        for tag in ("a", "b", "c"):
            await push_image(registry, "team/app", tag, [b"layer"])
        if which == 1:  # on the filesystem the times can be set: older and older
            for age, tag in enumerate(("a", "b", "c"), start=1):
                link = tmp_path / paths.tag_current_link("team/app", tag).lstrip("/")
                os.utime(link, (1_000_000 * age, 1_000_000 * age))
        times = await tags.push_times()
        assert set(times) == {"a", "b", "c"}
        assert await tags.push_times(["b", "gone"]) == {"b": times["b"]}
        digest, pushed = await tags.pushed("a")
        assert digest == await tags.get("a") and pushed == times["a"]
        if which == 1:
            assert times == {"a": 1e6, "b": 2e6, "c": 3e6}
        with pytest.raises(ManifestUnknown):
            await tags.pushed("gone")

    asyncio.run(scenario())
