"""The collector on a registry built through its own services, on the filesystem driver (whose
file times the tests age by hand): what is kept, what is swept, and what each mode spares."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from moorage.config import schema
from moorage.lifecycle.gc import Collector, Event, Options, Summary
from moorage.lifecycle.retention import Retention
from moorage.registry.digest import Digest
from moorage.registry.manifests import OCI_INDEX, OCI_MANIFEST
from moorage.registry.repository import Registry
from moorage.storage import driver as drivers
from moorage.storage import paths
from moorage.storage.cache.inmemory import InMemoryCache

T = TypeVar("T")
DELAY = 3600.0
EMPTY = "application/vnd.oci.empty.v1+json"


def run(coroutine: Awaitable[T]) -> T:
    async def main() -> T:
        return await coroutine

    return asyncio.run(main())


class Root:
    """A registry on a filesystem root, pushed to through its services."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.cache = InMemoryCache()
        self.registry = self.open()

    def open(self) -> Registry:
        driver = drivers.create("filesystem", {"rootdirectory": str(self.path)})
        return Registry(driver, deletes=True, cache=self.cache, gc_delay=DELAY)

    def age(self, seconds: float = 2 * DELAY) -> None:
        """Makes every file look unused for `seconds`."""
        then = time.time() - seconds
        for directory, _, files in os.walk(self.path):
            for name in files:
                os.utime(os.path.join(directory, name), (then, then))

    def files(self) -> set[str]:
        return {
            str(Path(d, f).relative_to(self.path)) for d, _, fs in os.walk(self.path) for f in fs
        }

    def has_content(self, digest: Digest) -> bool:
        return (self.path / paths.blob_data(digest).lstrip("/")).exists()

    def has_link(self, name: str, digest: Digest) -> bool:
        return (self.path / paths.layer_link(name, digest).lstrip("/")).exists()

    async def blob(self, name: str, data: bytes) -> Digest:
        digest = Digest.of(data)

        async def body() -> AsyncIterator[bytes]:
            yield data

        uploads = self.registry.repository(name).uploads
        await uploads.commit(await uploads.start(), digest, body())
        return digest

    async def manifest(
        self, name: str, reference: str, document: dict[str, Any], media_type: str = OCI_MANIFEST
    ) -> Digest:
        payload = json.dumps(document).encode()
        manifests = self.registry.repository(name).manifests
        return (await manifests.put(reference, payload, media_type, [])).digest

    async def image(
        self, name: str, reference: str, layers: list[bytes], **extra: Any
    ) -> tuple[Digest, list[Digest]]:
        """Pushes a config (its own per image) and layers; returns the manifest's digest and
        the blobs'."""
        config = await self.blob(name, json.dumps({"image": reference, **extra}).encode())
        blobs = [await self.blob(name, layer) for layer in layers]
        document: dict[str, Any] = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/json", "digest": str(config), "size": 1},
            "layers": [{"mediaType": "x", "digest": str(b), "size": 1} for b in blobs],
            **extra,
        }
        return await self.manifest(name, reference, document), [config, *blobs]

    async def collect(
        self, retention: Retention | None = None, **options: Any
    ) -> tuple[Summary, list[Event]]:
        events: list[Event] = []
        collector = Collector(
            self.registry,
            Options(**{"delay": DELAY, **options}),
            report=events.append,
            retention=retention,
        )
        return await collector.collect(), events


@pytest.fixture
def root(tmp_path: Path) -> Root:
    return Root(tmp_path / "root")


def descriptor(digest: Digest, media_type: str = OCI_MANIFEST) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": str(digest), "size": 1}


def test_unreferenced_content_and_its_links_go_and_shared_content_stays(root: Root) -> None:
    async def scenario() -> None:
        kept, kept_blobs = await root.image("app", "v1", [b"base", b"app one"])
        gone, gone_blobs = await root.image("app", "v2", [b"base", b"app two"])
        other, _ = await root.image("other", "v1", [b"base"])
        stray = await root.blob("app", b"pushed but never named")
        await root.registry.repository("app").manifests.delete(str(gone))
        root.age()
        summary, events = await root.collect()
        # v2's own config and layer, its manifest, and the stray blob
        swept = {gone, gone_blobs[0], gone_blobs[2], stray}
        assert {e.digest for e in events if e.kind == "blob"} == swept
        assert summary.blobs == 4 and summary.manifests == 0 and summary.repositories == 0
        assert summary.bytes == sum(e.size for e in events if e.kind == "blob") > 0
        for digest in swept:
            assert not root.has_content(digest)
        for digest in {gone_blobs[0], gone_blobs[2], stray}:
            assert not root.has_link("app", digest)
        for digest in {kept, other, *kept_blobs}:
            assert root.has_content(digest)
        assert root.has_link("app", kept_blobs[1])  # base, still named by v1
        stored = await root.registry.repository("app").manifests.get("v1")
        assert stored.digest == kept
        # a second collection finds nothing more
        again, events = await root.collect()
        assert (again.blobs, again.links, events) == (0, 0, [])

    run(scenario())


def test_recently_used_content_is_kept(root: Root) -> None:
    async def scenario() -> None:
        image, blobs = await root.image("app", "v1", [b"layer"])
        await root.registry.repository("app").manifests.delete(str(image))
        stray = await root.blob("app", b"stray")
        root.age()
        # the layer was HEADed (a push about to name it) since: its time is renewed
        await root.registry.blobs.use(blobs[1])
        summary, _ = await root.collect()
        assert root.has_content(blobs[1]) and root.has_link("app", blobs[1])
        assert not root.has_content(stray) and not root.has_content(blobs[0])
        assert summary.blobs == 3  # config, manifest, stray

    run(scenario())


def test_links_no_manifest_of_their_repository_names_go_even_when_the_content_stays(
    root: Root,
) -> None:
    """A repository whose images were all deleted leaves the catalog though its layers are
    shared with another (distribution #2314)."""

    async def scenario() -> None:
        await root.image("keeper", "v1", [b"shared"])
        image, _ = await root.image("team/deleted", "v1", [b"shared"])
        assert await root.registry.repositories() == ["keeper", "team/deleted"]
        await root.registry.repository("team/deleted").manifests.delete(str(image))
        root.age()
        summary, events = await root.collect()
        assert summary.repositories == 1
        assert ("repository", "team/deleted") in {(e.kind, e.repository) for e in events}
        assert await root.registry.repositories() == ["keeper"]
        assert not (root.path / paths.repository("team").lstrip("/")).exists()
        assert root.has_content(Digest.of(b"shared"))

    run(scenario())


def test_delete_untagged_keeps_children_of_kept_indexes_and_referrers_of_kept_subjects(
    root: Root,
) -> None:
    async def scenario() -> None:
        amd, amd_blobs = await root.image("app", "amd-tmp", [b"amd64"])
        arm, arm_blobs = await root.image("app", "arm-tmp", [b"arm64"])
        index = await root.manifest(
            "app",
            "multi",
            {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [descriptor(amd)]},
            OCI_INDEX,
        )
        subject = {"subject": descriptor(index, OCI_INDEX), "artifactType": "application/x-sig"}
        signature, signature_blobs = await root.image("app", "sig-tmp", [b"signature"], **subject)
        sig_of_sig, _ = await root.image(
            "app", "sig2-tmp", [b"countersigned"], subject=descriptor(signature)
        )
        old, old_blobs = await root.image("app", "old", [b"old layer"])
        orphan_sig, _ = await root.image(
            "app", "orphan-tmp", [b"orphaned signature"], subject=descriptor(old)
        )
        tags = root.registry.repository("app").tags
        for tag in ("amd-tmp", "arm-tmp", "sig-tmp", "sig2-tmp", "old", "orphan-tmp"):
            await tags.untag(tag)
        root.age()
        summary, events = await root.collect(delete_untagged=True)
        removed = {e.digest for e in events if e.kind == "manifest"}
        assert removed == {arm, old, orphan_sig}
        assert summary.manifests == 3
        manifests = root.registry.repository("app").manifests
        for digest in (amd, index, signature, sig_of_sig):
            assert await manifests.exists(digest)
            assert root.has_content(digest)
        for digest in (arm, old, orphan_sig):
            assert not await manifests.exists(digest)
            assert not root.has_content(digest)
        for blob in arm_blobs + old_blobs:
            assert not root.has_content(blob)
        for blob in amd_blobs + signature_blobs:
            assert root.has_content(blob)
        listed = await manifests.referrer_descriptors(index, None)
        assert [d.digest for d in listed] == [signature]
        assert await manifests.referrers.subjects() == sorted([index, signature])  # old's went
        # the tag histories of removed manifests went with them
        history = root.path / paths.tags("app").lstrip("/")
        assert not any(arm.hex in str(p) for p in history.rglob("*"))

    run(scenario())


def test_without_delete_untagged_every_revision_is_kept(root: Root) -> None:
    async def scenario() -> None:
        image, blobs = await root.image("app", "v1", [b"layer"])
        await root.registry.repository("app").tags.untag("v1")
        root.age()
        summary, events = await root.collect()
        assert (summary.blobs, summary.manifests, summary.links, events) == (0, 0, 0, [])
        assert all(root.has_content(d) for d in [image, *blobs])

    run(scenario())


def test_young_untagged_manifests_are_kept_with_what_they_name(root: Root) -> None:
    """A child pushed by digest, its index still to come."""

    async def scenario() -> None:
        child, blobs = await root.image("app", "tmp", [b"child layer"])
        await root.registry.repository("app").tags.untag("tmp")
        summary, _ = await root.collect(delete_untagged=True)
        assert summary.manifests == 0 and summary.blobs == 0
        assert all(root.has_content(d) for d in [child, *blobs])

    run(scenario())


def test_dry_run_reports_the_same_and_deletes_nothing(root: Root) -> None:
    async def scenario() -> None:
        image, _ = await root.image("app", "v1", [b"layer"])
        await root.image("app", "v2", [b"kept"])
        await root.registry.repository("app").tags.untag("v1")
        await root.blob("app", b"stray")
        root.age()
        before = root.files()
        dry, dry_events = await root.collect(delete_untagged=True, dryrun=True)
        assert root.files() == before
        real, real_events = await root.collect(delete_untagged=True)
        assert sorted(map(repr, dry_events)) == sorted(map(repr, real_events))
        assert (dry.manifests, dry.blobs, dry.links, dry.bytes) == (
            real.manifests,
            real.blobs,
            real.links,
            real.bytes,
        ) == (1, 4, 3, dry.bytes)
        assert not root.has_content(image)

    run(scenario())


def test_the_cache_forgets_what_is_swept(root: Root) -> None:
    async def scenario() -> None:
        image, blobs = await root.image("app", "v1", [b"layer"])
        blobs_here = root.registry.repository("app").blobs
        for digest in blobs:
            assert (await blobs_here.stat(digest)).size > 0  # now cached
        await root.registry.repository("app").manifests.delete(str(image))
        root.age()
        await root.collect()
        for digest in blobs:
            assert await root.cache.get("app", digest) is None
            assert await root.cache.get(None, digest) is None
            with pytest.raises(Exception, match="blob unknown"):
                await blobs_here.stat(digest)

    run(scenario())


def test_a_collection_past_half_its_delay_stops_deleting(root: Root) -> None:
    async def scenario() -> None:
        image, _ = await root.image("app", "v1", [b"layer"])
        await root.registry.repository("app").manifests.delete(str(image))
        root.age()
        collector = Collector(root.registry, Options(delay=DELAY))
        real_time = time.time
        calls = 0

        def later() -> float:  # every look at the clock is ten minutes on
            nonlocal calls
            calls += 1
            return real_time() + 600 * calls

        time.time = later  # type: ignore[assignment]
        try:
            summary = await collector.collect()
        finally:
            time.time = real_time  # type: ignore[assignment]
        assert "half the delay" in summary.stopped
        assert root.has_content(image)

    run(scenario())


def test_a_sha512_blob_is_kept_by_its_links_and_goes_with_them(root: Root) -> None:
    """Stored under its sha256 and linked under both digests, as distribution does."""

    async def scenario() -> None:
        data = b"a layer pushed by its sha512"
        named = Digest("sha512", hashlib.sha512(data).hexdigest())
        stored = Digest.of(data)

        async def body() -> AsyncIterator[bytes]:
            yield data

        uploads = root.registry.repository("app").uploads
        await uploads.commit(await uploads.start("sha512"), named, body())
        config = await root.blob("app", b"{}")
        document = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/json", "digest": str(config), "size": 2},
            "layers": [{"mediaType": "x", "digest": str(named), "size": len(data)}],
        }
        image = await root.manifest("app", "v1", document)
        root.age()
        summary, events = await root.collect()
        assert events == [] and summary.marked == 3
        assert root.has_content(stored) and root.has_link("app", named)
        assert root.has_link("app", stored)
        await root.registry.repository("app").manifests.delete(str(image))
        root.age()
        summary, events = await root.collect()
        assert not root.has_content(stored)
        assert not root.has_link("app", named) and not root.has_link("app", stored)
        assert {e.digest for e in events if e.kind == "link"} == {named, stored, config}

    run(scenario())


def policies(*entries: dict[str, Any]) -> Retention:
    return Retention.from_config(schema.Retention.model_validate({"policies": list(entries)}))


def test_retention_policies_decide_which_untagged_manifests_and_referrers_go(root: Root) -> None:
    """A policy's deleteuntagged overrides the collection's own; its deletereferrers (default
    false) keeps an untagged referrer whose subject the repository lacks; a repository no
    policy covers follows the collection's own setting for both."""
    retention = policies(
        {"repositories": ["keep/*"], "deleteuntagged": False},
        {"repositories": ["drop/*"], "deleteuntagged": True},
        {"repositories": ["sign/*"], "deletereferrers": True},
    )
    absent = Digest.of(b"a subject never pushed")

    async def scenario() -> None:
        untagged: dict[str, Digest] = {}
        referrers: dict[str, Digest] = {}
        for name in ("keep/a", "drop/a", "sign/a", "other"):
            await root.image(name, "v1", [b"tagged"])
            untagged[name], _ = await root.image(name, "tmp", [name.encode()])
            referrers[name], _ = await root.image(
                name, "sig", [b"sig " + name.encode()], subject=descriptor(absent)
            )
            for tag in ("tmp", "sig"):
                await root.registry.repository(name).tags.untag(tag)
        root.age()

        _, events = await root.collect(retention)
        removed = {(e.repository, e.digest) for e in events if e.kind == "manifest"}
        assert removed == {("drop/a", untagged["drop/a"])}  # delete_untagged off: the policy's

        _, events = await root.collect(retention, delete_untagged=True)
        removed = {(e.repository, e.digest) for e in events if e.kind == "manifest"}
        assert removed == {
            ("sign/a", untagged["sign/a"]),
            ("sign/a", referrers["sign/a"]),
            ("other", untagged["other"]),
            ("other", referrers["other"]),
        }
        for name in ("keep/a", "drop/a"):
            manifests = root.registry.repository(name).manifests
            assert await manifests.exists(referrers[name])
        assert await root.registry.repository("keep/a").manifests.exists(untagged["keep/a"])

    run(scenario())


def test_pull_records_go_with_their_manifests(root: Root) -> None:
    """The pull record of a manifest the collector removes goes with it, and so does that of a
    manifest a client deleted; a kept manifest's stays."""

    def record(name: str, digest: Digest) -> Path:
        path = root.path / paths.manifest_pull(name, digest).lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("2026-11-29T12:00:00Z")
        return path

    async def scenario() -> None:
        kept, _ = await root.image("app", "v1", [b"kept"])
        untagged, _ = await root.image("app", "tmp", [b"untagged"])
        deleted, _ = await root.image("app", "gone", [b"deleted"])
        manifests = root.registry.repository("app").manifests
        await root.registry.repository("app").tags.untag("tmp")
        await manifests.delete(str(deleted))
        records = {digest: record("app", digest) for digest in (kept, untagged, deleted)}
        root.age()
        dry, _ = await root.collect(delete_untagged=True, dryrun=True)
        assert dry.manifests == 1 and all(path.exists() for path in records.values())
        summary, _ = await root.collect(delete_untagged=True)
        assert summary.manifests == 1
        assert records[kept].exists()
        assert not records[untagged].exists() and not records[deleted].exists()

    run(scenario())
