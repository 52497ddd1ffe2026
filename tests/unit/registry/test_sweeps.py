"""Writers' claims against a collector's announced deletions (moorage.registry.sweeps), on the
filesystem driver: each step of the handshake played by hand, in the orders that matter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import TypeVar

import pytest

from moorage.registry.digest import Digest
from moorage.registry.errors import ManifestBlobUnknown
from moorage.registry.manifests import OCI_MANIFEST
from moorage.registry.repository import Registry
from moorage.registry.sweeps import STALE
from moorage.storage import driver as drivers
from moorage.storage import paths

T = TypeVar("T")
DELAY = 3600.0
LONG_AGO = time.time() - 2 * DELAY


def run(coroutine: Awaitable[T]) -> T:
    async def main() -> T:
        return await coroutine

    return asyncio.run(main())


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    driver = drivers.create("filesystem", {"rootdirectory": str(tmp_path)})
    return Registry(driver, deletes=True, gc_delay=DELAY)


def local(registry: Registry, digest: Digest) -> str:
    path = registry.driver.local_file(paths.blob_data(digest))
    assert path is not None
    return path


def age(registry: Registry, digest: Digest) -> None:
    os.utime(local(registry, digest), (LONG_AGO, LONG_AGO))


async def body(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push_blob(registry: Registry, name: str, data: bytes) -> Digest:
    digest = Digest.of(data)
    uploads = registry.repository(name).uploads
    await uploads.commit(await uploads.start(), digest, body(data))
    return digest


async def collect(registry: Registry, digest: Digest) -> None:
    """What a collector does to content it found unused: delete it and its links."""
    await registry.driver.delete(paths.blob_dir(digest))
    for name in ("app", "other"):
        link = paths.layer_link(name, digest)
        with contextlib.suppress(drivers.PathNotFound):
            await registry.driver.delete(link.rpartition("/")[0])


def test_a_claim_renews_old_content_and_leaves_recent_content_alone(registry: Registry) -> None:
    async def scenario() -> None:
        digest = await push_blob(registry, "app", b"layer")
        recent = os.stat(local(registry, digest)).st_mtime
        assert await registry.blobs.claim([digest]) == set()
        assert os.stat(local(registry, digest)).st_mtime == recent  # no write for recent content
        age(registry, digest)
        assert await registry.blobs.claim([digest]) == set()
        assert os.stat(local(registry, digest)).st_mtime > time.time() - 60
        missing = Digest.of(b"never pushed")
        assert await registry.blobs.claim([digest, missing]) == {missing}

    run(scenario())


def test_a_claim_waits_out_an_announcement_and_sees_what_it_deleted(registry: Registry) -> None:
    async def scenario() -> None:
        kept = await push_blob(registry, "app", b"kept")
        deleted = await push_blob(registry, "app", b"deleted")
        announcement = await registry.blobs.sweeps.announce([kept, deleted])
        claim = asyncio.create_task(registry.blobs.claim([kept, deleted]))
        await asyncio.sleep(0.3)
        assert not claim.done()  # waiting while the collector acts
        await collect(registry, deleted)
        await registry.blobs.sweeps.withdraw(announcement)
        assert await asyncio.wait_for(claim, 5) == {deleted}

    run(scenario())


def test_an_announcement_left_by_a_dead_collector_is_ignored(registry: Registry) -> None:
    async def scenario() -> None:
        digest = await push_blob(registry, "app", b"layer")
        announcement = await registry.blobs.sweeps.announce([digest])
        dead = time.time() - STALE - 1
        os.utime(registry.driver.local_file(announcement.path) or "", (dead, dead))
        assert await asyncio.wait_for(registry.blobs.claim([digest]), 5) == set()
        assert await registry.blobs.sweeps.remove_stale() == 1
        assert await registry.blobs.sweeps.announced() == set()

    run(scenario())


def test_an_upload_stores_its_own_bytes_when_a_collection_deletes_the_content(
    registry: Registry,
) -> None:
    """The content was there when the upload finished (so its bytes were not moved), and a
    collection deleted it before the claim: the upload moves its bytes into place after all."""

    async def scenario() -> None:
        data = b"shared layer"
        digest = await push_blob(registry, "other", data)
        age(registry, digest)
        announcement = await registry.blobs.sweeps.announce([digest])
        upload = asyncio.create_task(push_blob(registry, "app", data))
        await asyncio.sleep(0.3)
        assert not upload.done()
        await collect(registry, digest)
        await registry.blobs.sweeps.withdraw(announcement)
        await asyncio.wait_for(upload, 5)
        blobs = registry.repository("app").blobs
        assert (await blobs.stat(digest)).size == len(data)
        assert await registry.driver.get_content(paths.blob_data(digest)) == data

    run(scenario())


def test_a_manifest_whose_blob_is_collected_as_it_is_pushed_fails_and_is_taken_back(
    registry: Registry,
) -> None:
    async def scenario() -> None:
        config = await push_blob(registry, "app", b"{}")
        layer = await push_blob(registry, "app", b"layer")
        age(registry, layer)
        payload = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/json", "digest": str(config), "size": 2},
                "layers": [{"mediaType": "x", "digest": str(layer), "size": 5}],
            }
        ).encode()
        manifests = registry.repository("app").manifests
        announcement = await registry.blobs.sweeps.announce([layer])
        put = asyncio.create_task(manifests.put("v1", payload, OCI_MANIFEST, []))
        await asyncio.sleep(0.3)
        assert not put.done()
        await collect(registry, layer)
        await registry.blobs.sweeps.withdraw(announcement)
        with pytest.raises(ManifestBlobUnknown, match="push it again"):
            await asyncio.wait_for(put, 5)
        digest = Digest.of(payload)
        assert not await manifests.exists(digest)  # the revision is taken back
        assert await manifests.tags.all() == []  # and no tag was written
        # Pushed again, the blob and then the manifest go in.
        await push_blob(registry, "app", b"layer")
        assert (await manifests.put("v1", payload, OCI_MANIFEST, [])).digest == digest

    run(scenario())


def test_a_mount_of_collected_content_falls_back_to_an_upload(registry: Registry) -> None:
    async def scenario() -> None:
        digest = await push_blob(registry, "other", b"layer")
        age(registry, digest)
        source = registry.repository("other").blobs
        target = registry.repository("app").blobs
        announcement = await registry.blobs.sweeps.announce([digest])
        mount = asyncio.create_task(target.mount(digest, source))
        await asyncio.sleep(0.3)
        await collect(registry, digest)
        await registry.blobs.sweeps.withdraw(announcement)
        assert await asyncio.wait_for(mount, 5) is None
        assert await target.stored(digest) is None  # no link left behind

    run(scenario())
