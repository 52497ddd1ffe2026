"""Expiry of what the cache fetched, on the in-memory driver: links go, content stays."""

from __future__ import annotations

import asyncio
import json
import time

from moorage.proxy import expiry
from moorage.proxy.routes import Route, Routes
from moorage.proxy.upstream import Upstream
from moorage.registry.digest import Digest
from moorage.registry.repository import Registry
from moorage.storage import driver as drivers
from moorage.storage import paths

LAYER, SHARED = b"layer content", b"shared layer content"
CONFIG = b'{"architecture":"amd64"}'
ROUTES = Routes(
    [
        Route("hub", Upstream("https://registry-1.docker.io"), 60.0),
        Route("ghcr", Upstream("https://ghcr.io"), None),  # kept for ever
    ]
)


def manifest(*blobs: bytes) -> bytes:
    def descriptor(content: bytes, media_type: str) -> dict[str, object]:
        return {"mediaType": media_type, "digest": str(Digest.of(content)), "size": len(content)}

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": descriptor(CONFIG, "application/vnd.oci.image.config.v1+json"),
            "layers": [descriptor(b, "application/vnd.oci.image.layer.v1.tar+gzip") for b in blobs],
        }
    ).encode()


async def cache(registry: Registry, name: str, payload: bytes, *blobs: bytes) -> None:
    """What the cache stores for a pull of `name:v1`: content, links and records."""
    repository = registry.repository(name)
    for content in (CONFIG, *blobs):
        digest = Digest.of(content)
        await registry.blobs.put(content, digest)
        await repository.blobs.link(digest)
        await expiry.record(registry.driver, name, digest)
    result = await repository.manifests.put(
        str(Digest.of(payload)), payload, None, ["v1"], check_references=False
    )
    await expiry.record(registry.driver, name, result.digest)


def test_expired_links_go_and_content_stays() -> None:
    async def scenario() -> None:
        registry = Registry(drivers.create("inmemory", {}))
        cached, kept = manifest(LAYER, SHARED), manifest(SHARED)
        await cache(registry, "hub/library/app", cached, LAYER, SHARED)
        await cache(registry, "ghcr/org/app", kept, SHARED)
        own = registry.repository("team/app")  # an ordinary repository sharing a blob
        for content in (CONFIG, SHARED):
            await own.blobs.link(Digest.of(content))
        await own.manifests.put("v1", kept, None, [])

        assert await expiry.expire(registry, ROUTES, time.time()) == 0  # not yet
        assert await expiry.expire(registry, ROUTES, time.time() + 61) == 4

        app = registry.repository("hub/library/app")
        assert await app.blobs.links() == []
        assert await app.manifests.revisions() == []
        assert await app.tags.all() == []
        assert [info async for info in registry.driver.walk(paths.proxy_records(app.name))] == []
        for content in (CONFIG, LAYER, SHARED, cached):  # the garbage collection's to remove
            assert await registry.blobs.exists(Digest.of(content))
        # Kept for ever, and ordinary: untouched.
        for name in ("ghcr/org/app", "team/app"):
            repository = registry.repository(name)
            assert await repository.tags.all() == ["v1"]
            assert await repository.blobs.stat(Digest.of(SHARED))
        assert await expiry.expire(registry, ROUTES, time.time() + 3600) == 0

    asyncio.run(scenario())


def test_intervals() -> None:
    assert expiry.interval(2.0) == expiry.MIN_INTERVAL
    assert expiry.interval(60.0) == 15.0
    assert expiry.interval(168 * 3600.0) == expiry.MAX_INTERVAL


def test_what_distributions_cache_scheduled_is_adopted() -> None:
    async def scenario() -> None:
        registry = Registry(drivers.create("inmemory", {}))
        payload = manifest(LAYER)
        await cache(registry, "hub/library/app", payload, LAYER)
        # As distribution leaves it: the content and links, no records, its schedule file.
        await registry.driver.delete(paths.proxy_records("hub/library/app"))
        layer, gone = Digest.of(LAYER), Digest.of(b"unlinked")
        entries = [
            ("hub/library/app", Digest.of(payload), 1),
            ("hub/library/app", layer, 0),
            ("hub/library/app", gone, 0),  # expired by distribution meanwhile
            ("team/app", layer, 0),  # no route
            ("ghcr/org/app", layer, 0),  # kept for ever
            ("Bad Name", layer, 0),
        ]
        schedule = {
            f"{name}@{digest}": {
                "Key": f"{name}@{digest}",
                "ExpiryData": "2030-01-01T00:00:00Z",
                "EntryType": kind,
            }
            for name, digest, kind in entries
        }
        schedule["broken"] = {"Key": 5}  # type: ignore[dict-item]
        await registry.driver.put_content(
            paths.DISTRIBUTION_PROXY_SCHEDULE, json.dumps(schedule).encode()
        )
        assert await expiry.adopt(registry, ROUTES) == 2
        assert await expiry.adopt(registry, ROUTES) == 0  # recorded already
        assert await expiry.expire(registry, ROUTES, time.time() + 61) == 2
        assert await registry.repository("hub/library/app").tags.all() == []

    asyncio.run(scenario())


def test_no_schedule_or_a_broken_one_is_nothing_to_adopt() -> None:
    async def scenario() -> None:
        registry = Registry(drivers.create("inmemory", {}))
        assert await expiry.adopt(registry, ROUTES) == 0
        for content in (b"not json", b"[1, 2]", b'{"a": 1}'):
            await registry.driver.put_content(paths.DISTRIBUTION_PROXY_SCHEDULE, content)
            assert await expiry.adopt(registry, ROUTES) == 0

    asyncio.run(scenario())
