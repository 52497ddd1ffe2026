"""Quotas over the registry's real services (in-memory storage): which limit applies, what a push
is charged, refusals naming the quota, and the usage they are checked against."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from moorage.lifecycle.quotas import Limit, QuotaGate, Quotas
from moorage.lifecycle.usage import UsageTracker
from moorage.registry.blobs import child_names
from moorage.registry.digest import Digest
from moorage.registry.errors import QuotaExceeded
from moorage.registry.repository import Registry
from moorage.storage import driver as drivers
from moorage.storage import paths
from tests.unit.lifecycle.support import push_blob

KiB = 1024


def test_the_longest_matching_glob_wins_then_the_default() -> None:
    quotas = Quotas(
        default=100,
        repositories={"team/*": 50, "team/big/*": 500, "team/a*": 7, "team/?b": 8, "*/x": 9},
    )
    assert quotas.limit_for("team/big/one") == Limit(
        500, 'storage.quotas.repositories[team/big/*]'
    )
    assert quotas.limit_for("team/zz").size == 50  # type: ignore[union-attr]
    assert quotas.limit_for("team/app").size == 7  # type: ignore[union-attr]
    assert quotas.limit_for("team/xb").size == 8  # type: ignore[union-attr]
    # equal lengths: the first written
    assert quotas.limit_for("team/ab").size == 7  # type: ignore[union-attr]
    assert quotas.limit_for("other/x").size == 9  # type: ignore[union-attr]
    assert quotas.limit_for("other") == Limit(100, "storage.quotas.default")
    assert Quotas(repositories={"team/*": 1}).limit_for("other") is None
    assert not Quotas().configured


def quota_registry(quotas: Quotas) -> tuple[Registry, UsageTracker]:
    driver = drivers.create("inmemory", {})
    tracker = UsageTracker(driver, interval=3600)
    return Registry(driver, admission=QuotaGate(quotas, tracker)), tracker


def test_pushes_are_refused_past_the_quota_with_what_it_would_take() -> None:
    registry, tracker = quota_registry(Quotas(repositories={"team/*": 10 * KiB}))

    async def scenario() -> None:
        await tracker.refresh()
        await push_blob(registry, "team/app", b"a" * (6 * KiB))
        await push_blob(registry, "team/app", b"a" * (6 * KiB))  # linked already: free
        with pytest.raises(QuotaExceeded) as refused:
            await push_blob(registry, "team/app", b"b" * (5 * KiB))
        assert refused.value.message == (
            "pushing 5.0 KiB to team/app would take it to 11.0 KiB, over its quota of "
            '10.0 KiB (storage.quotas.repositories[team/*]); it holds 6.0 KiB'
        )
        assert refused.value.detail == {
            "repository": "team/app",
            "quota": 10 * KiB,
            "used": 6 * KiB,
            "adding": 5 * KiB,
        }
        repository = registry.repository("team/app")
        assert not await repository.blobs.is_linked(Digest.of(b"b" * (5 * KiB)))
        # the refused upload's session is gone with its data
        assert await child_names(registry.driver, paths.uploads("team/app")) == []
        await push_blob(registry, "team/app", b"c" * (4 * KiB))  # what still fits
        await push_blob(registry, "other", b"d" * (100 * KiB))  # no quota there

    asyncio.run(scenario())


def test_mounts_and_manifests_count() -> None:
    registry, tracker = quota_registry(Quotas(default=3 * KiB))

    async def scenario() -> None:
        await tracker.refresh()
        big = b"m" * (2 * KiB)
        await push_blob(registry, "source", big)
        target = registry.repository("target")
        assert await target.blobs.mount(Digest.of(big), registry.repository("source").blobs)
        # a blob stored once but linked twice: the target pays its size too
        other = b"q" * (2 * KiB)
        await push_blob(registry, "elsewhere", other)
        with pytest.raises(QuotaExceeded, match=re.escape("pushing 2.0 KiB to target")):
            await target.blobs.mount(Digest.of(other), None)
        assert not await target.blobs.is_linked(Digest.of(other))
        await push_blob(registry, "target", b"n" * KiB)
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": str(Digest.of(big)),
                    "size": len(big),
                },
                "layers": [],
            }
        ).encode()
        with pytest.raises(QuotaExceeded, match=re.escape("over its quota of 3.0 KiB")):
            await target.manifests.put("v1", manifest, None, [])
        assert await target.tags.all() == []

    asyncio.run(scenario())


def test_usage_is_the_last_computation_plus_what_this_process_linked_since() -> None:
    registry, tracker = quota_registry(Quotas(default=10 * KiB))

    async def scenario() -> None:
        await tracker.refresh()
        await push_blob(registry, "r", b"x" * (3 * KiB))
        assert tracker.current is not None and tracker.current.of("r").total == 0
        assert tracker.added("r") == 3 * KiB
        await tracker.refresh()  # now counted by the computation, no longer as added
        assert tracker.current.of("r").total == 3 * KiB
        assert tracker.added("r") == 0
        # another process's pushes are seen from the next computation on
        other = Registry(registry.driver)
        await push_blob(other, "r", b"y" * (6 * KiB))
        await push_blob(registry, "r", b"z" * KiB)  # 3 + 1 counted: fits
        await tracker.refresh()
        with pytest.raises(QuotaExceeded, match=re.escape("it holds 10.0 KiB")):
            await push_blob(registry, "r", b"w" * 10)

    asyncio.run(scenario())


def test_concurrent_pushes_are_each_counted() -> None:
    registry, tracker = quota_registry(Quotas(default=10 * KiB))

    async def scenario() -> list[BaseException | None]:
        await tracker.refresh()
        pushes = [push_blob(registry, "r", bytes([n]) * (3 * KiB)) for n in range(5)]
        return await asyncio.gather(*pushes, return_exceptions=True)

    outcomes = asyncio.run(scenario())
    assert sum(outcome is None for outcome in outcomes) == 3
    assert all(isinstance(o, QuotaExceeded) for o in outcomes if o is not None)


def test_a_failed_push_releases_what_it_held() -> None:
    registry, tracker = quota_registry(Quotas(default=10 * KiB))

    async def scenario() -> None:
        await tracker.refresh()
        gate = registry.admission
        assert gate is not None
        with pytest.raises(RuntimeError):
            async with gate.reserve("r", 8 * KiB):
                assert tracker.added("r") == 8 * KiB
                raise RuntimeError("the link failed")
        assert tracker.added("r") == 0

    asyncio.run(scenario())
