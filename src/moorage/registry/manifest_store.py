"""Manifests, tags and referrers of one repository."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from moorage.registry import manifests as schema
from moorage.registry.blobs import (
    CLAIM_ATTEMPTS,
    BlobStore,
    RepositoryBlobs,
    child_names,
    digests_below,
    read_link,
    write_link,
)
from moorage.registry.digest import Digest
from moorage.registry.errors import (
    BlobUnknown,
    DigestInvalid,
    ManifestBlobUnknown,
    ManifestInvalid,
    ManifestUnknown,
    RegistryError,
    Unavailable,
    Unsupported,
)
from moorage.registry.names import check_tag, parse_reference
from moorage.registry.space import needs_space
from moorage.storage import paths
from moorage.storage.driver import PathNotFound, StorageDriver

MTIME_SETTLED = 1.0  # seconds after which an mtime can be trusted to move on any change
MAX_KNOWN_LINKS = 100_000


@dataclass(frozen=True)
class StoredManifest:
    digest: Digest
    payload: bytes
    media_type: str


@dataclass(frozen=True)
class PutResult:
    digest: Digest
    manifest: schema.Manifest
    tags: tuple[str, ...]


def _pointed(digest: Digest | None, tag: str) -> Digest:
    if digest is None:
        raise ManifestUnknown(detail={"tag": tag})
    return digest


class Tags:
    def __init__(
        self,
        driver: StorageDriver,
        name: str,
        listings: dict[str, tuple[float, list[str]]] | None = None,
        links: dict[str, tuple[str, Digest]] | None = None,
    ) -> None:
        self.driver = driver
        self.name = name
        # Shared by the registry: repository -> (mtime of its tags directory, sorted tags),
        # and link path -> (file version, digest) for tags resolved on a local filesystem.
        self.listings = listings if listings is not None else {}
        self.links = links if links is not None else {}

    async def get(self, tag: str) -> Digest:
        """The digest the tag points at. On a local filesystem the answer is kept against the
        link file's version (inode, mtime, size) once its mtime has settled, so a request
        costs a stat instead of a read; a moved tag is a new file, hence a new version."""
        link = paths.tag_current_link(self.name, tag)
        if self.driver.local_file(link) is None:
            return _pointed(await read_link(self.driver, link), tag)
        try:
            info = await self.driver.stat(link)
        except PathNotFound:
            raise ManifestUnknown(detail={"tag": tag}) from None
        known = self.links.get(link)
        if known is not None and known[0] == info.version:
            return known[1]
        digest = _pointed(await read_link(self.driver, link), tag)
        if info.version and time.time() - info.modified > MTIME_SETTLED:
            if len(self.links) > MAX_KNOWN_LINKS:
                self.links.clear()
            self.links[link] = (info.version, digest)
        return digest

    async def pushed(self, tag: str) -> tuple[Digest, float]:
        """What the tag points at and when it was pushed (its current link's modification
        time: every push rewrites it), as `get` finds the digest. ManifestUnknown when there
        is no such tag."""
        link = paths.tag_current_link(self.name, tag)
        try:
            info = await self.driver.stat(link)
        except PathNotFound:
            raise ManifestUnknown(detail={"tag": tag}) from None
        known = self.links.get(link)
        if known is not None and info.version is not None and known[0] == info.version:
            return known[1], info.modified
        return await self.get(tag), info.modified

    async def push_times(self, tags: list[str] | None = None) -> dict[str, float]:
        """The push time of every tag, or of `tags` (a tag that is gone is left out): on a
        local filesystem the link files are stat'ed directly, in a thread; elsewhere the tags
        are walked (an object store lists a thousand keys a request)."""
        directory = paths.tags(self.name)
        local = self.driver.local_file(directory)
        if local is not None:
            wanted = await self.all() if tags is None else tags
            start = len(directory) + 1
            links = {tag: paths.tag_current_link(self.name, tag)[start:] for tag in wanted}
            return await asyncio.to_thread(_modified, local, links)
        found: dict[str, float] = {}
        base = directory + "/"
        async for info in self.driver.walk(directory):
            tag, _, rest = info.path[len(base) :].partition("/")
            if rest == "current/link":
                found[tag] = info.modified
        if tags is not None:
            found = {tag: found[tag] for tag in tags if tag in found}
        return found

    async def tag(self, tag: str, digest: Digest) -> None:
        # The current link first: a tag is listed as soon as its directory exists, so a write
        # that fails (a full disk, a crash) after a first index link would leave a new tag listed
        # that does not resolve. This way it leaves the tag whole, its index (which nothing
        # reads) short of an entry.
        await write_link(self.driver, paths.tag_current_link(self.name, tag), digest)
        await write_link(self.driver, paths.tag_index_link(self.name, tag, digest), digest)

    async def untag(self, tag: str) -> None:
        """Removes the tag, and its pull record (lifecycle/pulls.py) when it has one."""
        try:
            await self.driver.delete(paths.tag_dir(self.name, tag))
        except PathNotFound:
            raise ManifestUnknown(detail={"tag": tag}) from None
        with contextlib.suppress(PathNotFound):
            await self.driver.delete(paths.tag_pull(self.name, tag))

    async def all(self) -> list[str]:
        """Every tag, in lexical order. On a local filesystem, where a directory's mtime moves
        whenever an entry is added or removed, the sorted list is kept and revalidated by one
        stat; elsewhere it is listed each time."""
        directory = paths.tags(self.name)
        if self.driver.local_file(directory) is None:
            return sorted(await child_names(self.driver, directory))
        try:
            modified = (await self.driver.stat(directory)).modified
        except PathNotFound:
            return []
        known = self.listings.get(self.name)
        if known is not None and known[0] == modified:
            return known[1]
        tags = sorted(await child_names(self.driver, directory))
        # Timestamps are coarse (a clock tick): a listing is kept only once its mtime is older
        # than that, so that any later change is sure to carry a newer one.
        if time.time() - modified > MTIME_SETTLED:
            self.listings[self.name] = (modified, tags)
        return tags

    async def pointing_at(self, digest: Digest) -> list[str]:
        found = []
        for tag in await self.all():
            if await read_link(self.driver, paths.tag_current_link(self.name, tag)) == digest:
                found.append(tag)
        return found


def _modified(directory: str, links: dict[str, str]) -> dict[str, float]:
    """The modification times of files below a local directory, by key (`links`: key -> path
    relative to the directory, a shorter lookup per file); a missing file is left out."""
    found: dict[str, float] = {}
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except (FileNotFoundError, NotADirectoryError):
        return found
    try:
        for key, path in links.items():
            with contextlib.suppress(FileNotFoundError, NotADirectoryError):
                found[key] = os.stat(path, dir_fd=fd).st_mtime
    finally:
        os.close(fd)
    return found


class Referrers:
    """The manifests of a repository that name a subject: an index kept beside the manifests,
    written on push and removed on delete."""

    def __init__(self, driver: StorageDriver, name: str) -> None:
        self.driver = driver
        self.name = name

    async def add(self, subject: Digest, referrer: Digest) -> None:
        await write_link(self.driver, paths.referrer_link(self.name, subject, referrer), referrer)

    async def remove(self, subject: Digest, referrer: Digest) -> None:
        link = paths.referrer_link(self.name, subject, referrer)
        with contextlib.suppress(PathNotFound):
            await self.driver.delete(link.rpartition("/")[0])

    async def digests(self, subject: Digest) -> list[Digest]:
        return await digests_below(self.driver, paths.referrers(self.name, subject))

    async def subjects(self) -> list[Digest]:
        """The subjects the index has referrers for, sorted."""
        return await digests_below(self.driver, paths.referrer_subjects(self.name))


@dataclass(frozen=True)
class LayerURLs:
    """The URLs a manifest's layers may name for clients to fetch them from (distribution's
    `validation.manifests.urls`): http or https without a fragment, found by `allow` when it is
    set and not by `deny`."""

    allow: re.Pattern[str] | None = None
    deny: re.Pattern[str] | None = None

    def permits(self, url: str) -> bool:
        try:
            parts = urlsplit(url)
        except ValueError:
            return False
        return (
            parts.scheme in ("http", "https")
            and not parts.fragment
            and (self.allow is None or self.allow.search(url) is not None)
            and (self.deny is None or self.deny.search(url) is None)
        )


@dataclass(frozen=True)
class IndexChildren:
    """Which manifests an index names must be in the repository when it is pushed
    (distribution's `validation.manifests.indexes`): all of them, none, or those of the listed
    (architecture, os) platforms."""

    required: bool = True
    platforms: frozenset[tuple[str, str]] = frozenset()

    def must_exist(self, child: schema.Descriptor) -> bool:
        if not self.required:
            return False
        return not self.platforms or child.platform in self.platforms


class Manifests:
    def __init__(
        self,
        driver: StorageDriver,
        store: BlobStore,
        blobs: RepositoryBlobs,
        name: str,
        *,
        deletes: bool,
        tag_listings: dict[str, tuple[float, list[str]]] | None = None,
        tag_links: dict[str, tuple[str, Digest]] | None = None,
        layer_urls: LayerURLs | None = None,
        index_children: IndexChildren | None = None,
    ) -> None:
        self.driver = driver
        self.store = store
        self.blobs = blobs
        self.name = name
        self.deletes = deletes
        self.layer_urls = layer_urls or LayerURLs()
        self.index_children = index_children or IndexChildren()
        self.tags = Tags(driver, name, tag_listings, tag_links)
        self.referrers = Referrers(driver, name)

    async def resolve(self, reference: str) -> Digest:
        """The digest a tag or digest reference names in this repository; ManifestUnknown when
        there is none."""
        parsed = parse_reference(reference)
        if isinstance(parsed, str):
            return await self.tags.get(parsed)
        if not await self.exists(parsed):
            raise ManifestUnknown(detail={"digest": reference})
        return parsed

    async def revisions(self) -> list[Digest]:
        """The digests this repository has revision entries for, sorted (an entry may have
        lost its link file: see digests_below; `exists` tells)."""
        return await digests_below(self.driver, paths.manifest_revisions(self.name))

    async def exists(self, digest: Digest) -> bool:
        link = paths.manifest_revision_link(self.name, digest)
        return await read_link(self.driver, link) == digest

    async def get(self, reference: str, resolved: Digest | None = None) -> StoredManifest:
        """The manifest `reference` names; `resolved` is what `resolve(reference)` answered
        already, when the caller asked first."""
        digest = resolved or await self.resolve(reference)
        try:
            payload = await self.store.get(digest)
        except BlobUnknown:
            raise ManifestUnknown(detail={"digest": str(digest)}) from None
        if ":" in reference:  # by digest (no tag has a colon): an index may name it next
            self.store.note_use(digest)
        return StoredManifest(digest, payload, schema.stored_media_type(digest, payload))

    @needs_space
    async def put(
        self,
        reference: str,
        payload: bytes,
        content_type: str | None,
        extra_tags: list[str],
        *,
        check_references: bool = True,
    ) -> PutResult:
        """Verifies and stores a manifest, then points the tags at it: the reference when it is
        a tag, and each of `extra_tags` (the `?tag=` of a push by digest). Without
        `check_references`, the blobs and child manifests it names need not be here yet: a
        pull-through cache stores a manifest before it is asked for what it names."""
        tags = [check_tag(tag) for tag in extra_tags]
        named = parse_reference(reference)
        if isinstance(named, str):
            digest = Digest.of(payload)
            tags.insert(0, named)
        else:
            digest = Digest.of(payload, named.algorithm)
            if digest != named:
                raise DigestInvalid(
                    "manifest content does not match the digest in the URL",
                    detail={"digest": reference, "actual": str(digest)},
                )
        manifest = schema.parse(payload, content_type)
        # without the check, nothing it names is here to claim (a pull-through cache's)
        stored = await self._check_references(manifest) if check_references else {}
        async with self.blobs.admitted(digest, len(payload)):
            await self._store(digest, payload, manifest, stored, check_references)
        if manifest.subject is not None:
            await self.referrers.add(manifest.subject.digest, digest)
        for tag in tags:
            await self.tags.tag(tag, digest)
        return PutResult(digest, manifest, tuple(tags))

    async def _check_references(self, manifest: schema.Manifest) -> dict[Digest, Digest]:
        """Raises unless the repository has every blob and child manifest the manifest names;
        returns the digest each blob's content is stored under."""
        stored = {}
        for blob in manifest.blobs:
            if not all(self.layer_urls.permits(url) for url in blob.urls):
                raise ManifestBlobUnknown(
                    f"invalid URL on layer {blob.digest}", detail={"digest": str(blob.digest)}
                )
            if blob.urls:
                continue  # a foreign layer lives outside the registry
            try:
                stored[blob.digest] = (await self.blobs.stat(blob.digest)).stored
            except BlobUnknown:
                raise ManifestBlobUnknown(
                    f"blob {blob.digest} is not in repository {self.name}",
                    detail={"digest": str(blob.digest)},
                ) from None
        for child in manifest.children:  # as distribution: a 400 MANIFEST_BLOB_UNKNOWN
            if self.index_children.must_exist(child) and not await self.exists(child.digest):
                raise ManifestBlobUnknown(
                    f"manifest {child.digest} is not in repository {self.name}",
                    detail={"digest": str(child.digest)},
                )
        return stored

    async def _store(
        self,
        digest: Digest,
        payload: bytes,
        manifest: schema.Manifest,
        stored: dict[Digest, Digest],
        claim_children: bool = True,
    ) -> None:
        """Stores the content and the revision link, then claims the manifest with everything
        it names (`stored`, and the children that must exist when `claim_children`;
        moorage.registry.sweeps): when a garbage collection deleted a blob or child meanwhile,
        the revision is taken back and the PUT fails, so that no manifest is ever answered for
        whose blobs are gone; when it took the manifest's own content or revision, they are
        written again."""
        revision = paths.manifest_revision_link(self.name, digest)
        existed = await self.exists(digest)
        children = [
            child.digest
            for child in manifest.children
            if claim_children and self.index_children.must_exist(child)
        ]
        for _ in range(CLAIM_ATTEMPTS):
            await self.store.put(payload, digest)
            await write_link(self.driver, revision, digest)
            gone = await self.store.claim([digest, *stored.values(), *children])
            lost = await self._lost(stored, children, gone)
            if lost is not None:
                if not existed:
                    with contextlib.suppress(Unavailable):
                        await self.blobs.unlink(revision.rpartition("/")[0], digest)
                raise lost
            if digest not in gone and await self.exists(digest):
                return
        raise Unavailable("a garbage collection kept deleting this manifest as it was stored")

    async def _lost(
        self, stored: dict[Digest, Digest], children: list[Digest], gone: set[Digest]
    ) -> RegistryError | None:
        """What the manifest names that the repository no longer has, after a claim."""
        for blob, content in stored.items():
            if content in gone or await self.blobs.stored(blob) != content:
                with contextlib.suppress(Unavailable):
                    await self.blobs.forget(blob)  # so that the client finds it missing
                return ManifestBlobUnknown(
                    f"blob {blob} is no longer in repository {self.name} (garbage collected "
                    "as the manifest was pushed): push it again",
                    detail={"digest": str(blob)},
                )
        for child in children:
            if child in gone or not await self.exists(child):
                return ManifestBlobUnknown(
                    f"manifest {child} is no longer in repository {self.name} (garbage "
                    "collected as the index was pushed): push it again",
                    detail={"digest": str(child)},
                )
        return None

    async def delete(self, reference: str) -> list[str]:
        """Deleting a tag untags it; deleting a digest removes the manifest, then (as
        distribution does) every tag on it and its entry in the referrers of its subject. The
        content stays for garbage collection. Returns the tags removed, in order. The revision
        goes first: untagged first, the manifest could be collected as untagged under the
        delete, which would then find nothing to remove."""
        if not self.deletes:
            raise Unsupported("deletes are disabled on this registry")
        if isinstance(parse_reference(reference), str):
            await self.tags.untag(reference)
            return [reference]
        digest = await self.resolve(reference)
        await self.blobs.forget(digest)  # refused before any change when the cache is out of reach
        try:
            manifest: schema.Manifest | None = schema.parse(await self.store.get(digest), None)
        except RegistryError:
            manifest = None  # content gone or unparseable: nothing more to unindex
        link = paths.manifest_revision_link(self.name, digest)
        if not await self.blobs.unlink(link.rpartition("/")[0], digest):
            raise ManifestUnknown(detail={"digest": reference})  # a concurrent delete took it
        if manifest is not None and manifest.subject is not None:
            await self.referrers.remove(manifest.subject.digest, digest)
        untagged = []
        for tag in await self.tags.pointing_at(digest):
            with contextlib.suppress(ManifestUnknown):  # untagged by a concurrent delete
                await self.tags.untag(tag)
                untagged.append(tag)
        return untagged

    async def referrer_descriptors(
        self, subject: Digest, artifact_type: str | None
    ) -> list[schema.Descriptor]:
        """The descriptors of the manifests whose subject is `subject`, for the referrers API,
        optionally only those of one artifact type."""
        found = []
        for digest in await self.referrers.digests(subject):
            if not await self.exists(digest):
                continue  # deleted by a registry that keeps no referrers index
            try:
                payload = await self.store.get(digest)
                manifest = schema.parse(payload, None)
            except (BlobUnknown, ManifestInvalid):
                continue
            if artifact_type is not None and manifest.artifact_type != artifact_type:
                continue
            found.append(
                schema.Descriptor(
                    media_type=manifest.media_type,
                    digest=digest,
                    size=len(payload),
                    artifact_type=manifest.artifact_type,
                    annotations=manifest.annotations,
                )
            )
        return found
