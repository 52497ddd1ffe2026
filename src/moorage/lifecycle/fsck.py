"""Checking a storage root, moorage's or distribution's, on any driver, for what a registry cannot
serve as it stands, and repairing what can be repaired without guessing.

Each problem is a Finding of one Kind. The check reads storage only (never a cache) and writes
nothing, so a registry may serve the root meanwhile. A repair removes a link only when what it
points at is gone, so nothing that could still be served is lost, and rebuilds moorage's
referrers index from the manifests; it re-checks each finding just before acting and leaves
one that no longer holds (a push meanwhile). What cannot be repaired that way (a manifest
missing a layer, an index missing a child, corrupt content) is reported and left.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field

from moorage.lifecycle.inventory import inventory
from moorage.lifecycle.references import References, references
from moorage.registry import purge
from moorage.registry.blobs import content_hex, read_link
from moorage.registry.digest import Digest
from moorage.registry.errors import ManifestInvalid, NameInvalid, RegistryError
from moorage.registry.manifests import MAX_MANIFEST_SIZE
from moorage.registry.names import is_tag
from moorage.registry.repository import Registry, Repository
from moorage.storage import paths
from moorage.storage.cache import BlobDescriptorCache
from moorage.storage.driver import PathNotFound, StorageDriver, StorageError

CONCURRENCY = 16  # storage requests in flight while checking one repository


class Kind(enum.StrEnum):
    """What is wrong. Every finding of a kind is repaired the same way, or never."""

    REPOSITORY_INVALID = "repository-invalid"  # a repository directory whose name is no name
    LINK_INVALID = "link-invalid"  # a layer or revision link naming no digest, or another one
    LAYER_DANGLING = "layer-dangling"  # a layer link whose content is gone: removed
    REVISION_DANGLING = "revision-dangling"  # a manifest revision whose content is gone: removed
    MANIFEST_INVALID = "manifest-invalid"  # a revision whose content is not a manifest
    TAG_INVALID = "tag-invalid"  # a tag without a current link naming a digest: removed
    # a tag pointing at no manifest of the repository: removed if the content is gone too
    TAG_DANGLING = "tag-dangling"
    # a manifest's config or layer the repository does not link, or whose content is gone
    BLOB_MISSING = "blob-missing"
    CHILD_MISSING = "child-missing"  # an index's manifest the repository does not have
    REFERRER_STALE = "referrer-stale"  # a referrers index entry without its manifest: removed
    REFERRER_MISSING = "referrer-missing"  # a manifest with a subject, not indexed: added
    UPLOAD_ABANDONED = "upload-abandoned"  # an upload session older than the purge age: removed
    BLOB_CORRUPT = "blob-corrupt"  # content that does not hash to its digest


# Repairs return False, doing nothing, when the finding no longer holds.
Repair = Callable[[], Awaitable[bool]]


@dataclass(frozen=True)
class Finding:
    kind: Kind
    repository: str | None  # None for the blob store
    digest: Digest | None  # the blob, manifest or subject concerned
    path: str  # the storage key at fault
    problem: str  # what is wrong, in words
    remedy: str  # what --repair does, or, when it cannot, what the operator can do
    repair: Repair | None = field(default=None, compare=False, repr=False)

    @property
    def repairable(self) -> bool:
        return self.repair is not None

    def __str__(self) -> str:
        where = self.repository if self.repository is not None else "blobs"
        action = "repair" if self.repairable else "left"
        return f"{self.kind} {where}: {self.problem} [{action}: {self.remedy}]"


@dataclass
class Report:
    findings: list[Finding] = field(default_factory=list)
    # what was looked at: "repositories", "manifests", "tags", "layer links", "referrers",
    # "upload sessions", "blobs verified", "bytes verified"
    checked: Counter[str] = field(default_factory=Counter)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    def counts(self) -> Counter[Kind]:
        return Counter(finding.kind for finding in self.findings)


@dataclass(frozen=True)
class Outcome:
    finding: Finding
    repaired: bool
    note: str = ""  # why not, when not


class Fsck:
    """Checks one root through `driver`. `cache` is the shared blob descriptor cache the
    registries serving the root use (Redis), if any: repairs keep it true; checks never read
    it. `progress(done, total)` follows content verification, in bytes."""

    def __init__(
        self,
        driver: StorageDriver,
        *,
        upload_age: float,
        cache: BlobDescriptorCache | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.driver = driver
        self.registry = Registry(driver)
        self.writer = Registry(driver, cache=cache)
        self.upload_age = upload_age
        self.progress = progress
        self._sizes: dict[Digest, int | None] = {}

    async def check(self, *, verify_content: bool = False) -> Report:
        """Raises StorageError when storage fails (other than a missing path)."""
        report = Report()
        markers = (paths.REPOSITORY_MARKER, paths.MANIFESTS_MARKER)
        for name in await self.registry.walk(*markers):
            try:
                repository = self.registry.repository(name)
            except NameInvalid:
                report.add(
                    Finding(
                        Kind.REPOSITORY_INVALID,
                        name,
                        None,
                        paths.repository(name),
                        f"{paths.repository(name)} is no valid repository name",
                        "rename or remove the directory",
                    )
                )
                continue
            report.checked["repositories"] += 1
            await _RepositoryCheck(self, repository, report).run()
        await self._uploads(report)
        if verify_content:
            await self._verify(report)
        report.findings.sort(key=lambda f: (f.repository or "", f.kind, f.path))
        return report

    async def repair(self, findings: Iterable[Finding]) -> list[Outcome]:
        """Repairs what can be repaired, one finding at a time."""
        outcomes = []
        for finding in findings:
            if finding.repair is None:
                continue
            try:
                done = await finding.repair()
            except (RegistryError, StorageError) as exc:
                outcomes.append(Outcome(finding, False, str(exc)))
                continue
            outcomes.append(Outcome(finding, done, "" if done else "changed since the check"))
        return outcomes

    async def size(self, digest: Digest, *, fresh: bool = False) -> int | None:
        """The size of the content stored under `digest`; None when there is none."""
        if not fresh and digest in self._sizes:
            return self._sizes[digest]
        try:
            info = await self.driver.stat(paths.blob_data(digest))
            size: int | None = None if info.is_dir else info.size
        except PathNotFound:
            size = None
        self._sizes[digest] = size
        return size

    async def link_exists(self, path: str) -> bool:
        try:
            await self.driver.stat(path)
        except PathNotFound:
            return False
        return True

    async def each(
        self, items: Iterable[Digest], check: Callable[[Digest], Awaitable[None]]
    ) -> None:
        """Runs `check` on every item, CONCURRENCY at a time."""
        pending = iter(items)

        async def worker() -> None:
            for item in pending:  # shared: each item goes to the first worker free
                await check(item)

        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))

    async def _uploads(self, report: Report) -> None:
        now = time.time()
        async for session in purge.sessions(self.registry):
            report.checked["upload sessions"] += 1
            if session.started is None or not purge.is_stale(session, self.upload_age):
                continue

            async def remove(session: purge.Session = session) -> bool:
                await purge.remove(self.writer, session)
                return True

            report.add(
                Finding(
                    Kind.UPLOAD_ABANDONED,
                    session.repository,
                    None,
                    session.directory,
                    f"upload session {session.upload_id} started {_ago(now - session.started)} "
                    f"ago (the purge age is {_ago(self.upload_age)})",
                    "remove the session",
                    remove,
                )
            )

    async def _verify(self, report: Report) -> None:
        """Re-hashes every blob's content, one at a time, streamed."""
        blobs: list[tuple[Digest, int]] = []
        async for digest in self.registry.blobs.digests():
            size = await self.size(digest)
            if size is not None:
                blobs.append((digest, size))
        total = sum(size for _, size in blobs)
        done = 0

        def advance(count: int) -> None:
            nonlocal done
            done += count
            if self.progress is not None:
                self.progress(done, total)

        for digest, size in blobs:
            path = paths.blob_data(digest)
            try:
                actual = await content_hex(self.driver, path, digest.algorithm, advance)
            except PathNotFound:  # removed meanwhile
                continue
            report.checked["blobs verified"] += 1
            report.checked["bytes verified"] += size
            if actual != digest.hex:
                report.add(
                    Finding(
                        Kind.BLOB_CORRUPT,
                        None,
                        digest,
                        path,
                        f"the content of {digest} hashes to {digest.algorithm}:{actual}",
                        "restore it from a backup, or delete what uses it and push it again",
                    )
                )


def _ago(elapsed: float) -> str:
    if elapsed < 3600:
        return f"{elapsed / 60:.0f} min"
    if elapsed < 48 * 3600:
        return f"{elapsed / 3600:.0f} h"
    return f"{elapsed / 86400:.0f} days"


class _RepositoryCheck:
    """The checks of one repository, in order: revisions and layer links first, since tags,
    manifests' references and the referrers index are checked against them."""

    def __init__(self, fsck: Fsck, repository: Repository, report: Report) -> None:
        self.fsck = fsck
        self.driver = fsck.driver
        self.name = repository.name
        self.repository = repository
        self.writer = fsck.writer.repository(repository.name)
        self.report = report
        self.present: set[Digest] = set()  # manifests linked, with content
        self.manifests: dict[Digest, References] = {}  # those of them that can be read
        self.layers: dict[Digest, Digest] = {}  # layer link -> the digest it names

    async def run(self) -> None:
        files = await inventory(self.driver, self.name, everything=False)
        await self.fsck.each(sorted(files.revisions), self._revision)
        await self.fsck.each(files.layers, self._layer)
        await self._tags()
        await self._references()
        await self._referrers()

    def _add(
        self,
        kind: Kind,
        digest: Digest | None,
        path: str,
        problem: str,
        remedy: str,
        repair: Repair | None = None,
    ) -> None:
        self.report.add(Finding(kind, self.name, digest, path, problem, remedy, repair))

    async def _revision(self, digest: Digest) -> None:
        link = paths.manifest_revision_link(self.name, digest)
        named = await read_link(self.driver, link)
        if named is None and not await self.fsck.link_exists(link):
            return  # removed meanwhile
        if named != digest:
            self._add(
                Kind.LINK_INVALID,
                digest,
                link,
                f"the revision link {link} names {named or 'no digest'}",
                "delete the manifest and push it again",
            )
            return
        self.report.checked["manifests"] += 1
        size = await self.fsck.size(digest)
        if size is None:
            self._add(
                Kind.REVISION_DANGLING,
                digest,
                link,
                f"manifest {digest} is gone: its content is missing",
                "remove the revision link",
                self._unlink_if_gone(link, digest, digest),
            )
            return
        self.present.add(digest)
        if size > MAX_MANIFEST_SIZE:
            self._add(
                Kind.MANIFEST_INVALID,
                digest,
                paths.blob_data(digest),
                f"manifest {digest} is {size} bytes, more than a manifest may be",
                "delete the manifest",
            )
            return
        try:
            payload = await self.driver.get_content(paths.blob_data(digest))
            self.manifests[digest] = references(payload)
        except PathNotFound:
            return  # removed meanwhile
        except ManifestInvalid as exc:
            self._add(
                Kind.MANIFEST_INVALID,
                digest,
                paths.blob_data(digest),
                f"manifest {digest} cannot be read: {exc.message}",
                "delete the manifest",
            )

    async def _layer(self, digest: Digest) -> None:
        link = paths.layer_link(self.name, digest)
        stored = await read_link(self.driver, link)
        if stored is None and not await self.fsck.link_exists(link):
            return  # the directory a delete by distribution leaves
        # Content is stored under its sha256 (paths.CONTENT_ALGORITHM): a sha256 blob's own.
        if (
            stored is None
            or stored.algorithm != paths.CONTENT_ALGORITHM
            or (digest.algorithm == paths.CONTENT_ALGORITHM and stored != digest)
        ):
            self._add(
                Kind.LINK_INVALID,
                digest,
                link,
                f"the layer link {link} names {stored or 'no digest'}",
                "delete the blob from the repository and push it again",
            )
            return
        self.layers[digest] = stored
        self.report.checked["layer links"] += 1
        if await self.fsck.size(stored) is not None:
            return
        self._add(
            Kind.LAYER_DANGLING,
            digest,
            link,
            f"blob {digest} is linked but its content is gone",
            "remove the layer link, so that clients push the blob again",
            self._unlink_if_gone(link, digest, stored),
        )

    def _unlink_if_gone(self, link: str, digest: Digest, stored: Digest) -> Repair:
        """The repair of a link (for `digest`, naming content stored under `stored`) whose
        content is gone: it removes the link if it still names that content and the content is
        still gone."""

        async def unlink() -> bool:
            if await read_link(self.driver, link) != stored:
                return False
            if await self.fsck.size(stored, fresh=True) is not None:
                return False
            await self.writer.blobs.unlink(link.rpartition("/")[0], digest)
            await self.writer.blobs.store.forget(stored)
            return True

        return unlink

    async def _tags(self) -> None:
        for tag in await self.repository.tags.all():
            if not is_tag(tag):
                self._add(
                    Kind.TAG_INVALID,
                    None,
                    f"{paths.tags(self.name)}/{tag}",
                    f"{paths.tags(self.name)}/{tag} is no valid tag name",
                    "rename or remove the directory",
                )
                continue
            self.report.checked["tags"] += 1
            await self._tag(tag)

    async def _tag(self, tag: str) -> None:
        link = paths.tag_current_link(self.name, tag)
        digest = await read_link(self.driver, link)

        async def untag() -> bool:
            if await read_link(self.driver, link) != digest:
                return False
            if digest is not None and await self.fsck.size(digest, fresh=True) is not None:
                return False
            await self.writer.tags.untag(tag)
            return True

        if digest is None:
            self._add(
                Kind.TAG_INVALID,
                None,
                link,
                f"tag {tag} has no current link naming a manifest",
                "remove the tag",
                untag,
            )
            return
        if digest in self.present:
            return
        if await self.fsck.size(digest) is None:
            self._add(
                Kind.TAG_DANGLING,
                digest,
                link,
                f"tag {tag} points at manifest {digest}, whose content is gone",
                "remove the tag",
                untag,
            )
            return
        self._add(
            Kind.TAG_DANGLING,
            digest,
            link,
            f"tag {tag} points at {digest}, which is not a manifest of the repository "
            "(its content is still stored)",
            "push the manifest again, or delete the tag",
        )

    async def _references(self) -> None:
        for digest, refs in self.manifests.items():
            for blob in refs.blobs:
                await self._blob(digest, blob)
            for child in refs.children:
                if child not in self.present:
                    self._add(
                        Kind.CHILD_MISSING,
                        digest,
                        paths.manifest_revision_link(self.name, child),
                        f"index {digest} lists manifest {child}, which the repository lacks",
                        "push the manifest again, or delete the index",
                    )

    async def _blob(self, manifest: Digest, blob: Digest) -> None:
        stored = self.layers.get(blob) or await self.repository.blobs.stored(blob)
        if stored is None:
            self._add(
                Kind.BLOB_MISSING,
                blob,
                paths.layer_link(self.name, blob),
                f"manifest {manifest} references blob {blob}, which the repository does not link",
                "push the blob to the repository again, or delete the manifest",
            )
        elif await self.fsck.size(stored) is None:
            self._add(
                Kind.BLOB_MISSING,
                blob,
                paths.blob_data(stored),
                f"manifest {manifest} references blob {blob}, whose content is gone",
                "push the blob again, or delete the manifest",
            )

    async def _referrers(self) -> None:
        referrers = self.repository.manifests.referrers
        expected = {
            (refs.subject, digest)
            for digest, refs in self.manifests.items()
            if refs.subject is not None
        }
        indexed = set()
        for subject in await referrers.subjects():
            for referrer in await referrers.digests(subject):
                indexed.add((subject, referrer))
        self.report.checked["referrers"] += len(indexed)
        for subject, referrer in sorted(indexed - expected):
            self._add(
                Kind.REFERRER_STALE,
                subject,
                paths.referrer_link(self.name, subject, referrer),
                f"the referrers of {subject} list {referrer}, which is no manifest of the "
                "repository with that subject",
                "remove the entry",
                self._unindex(subject, referrer),
            )
        for subject, referrer in sorted(expected - indexed):
            self._add(
                Kind.REFERRER_MISSING,
                subject,
                paths.referrer_link(self.name, subject, referrer),
                f"manifest {referrer} has subject {subject} but is not in its referrers",
                "add the entry",
                self._index(subject, referrer),
            )

    def _unindex(self, subject: Digest, referrer: Digest) -> Repair:
        async def repair() -> bool:
            if await self.repository.manifests.exists(referrer):
                try:
                    payload = await self.driver.get_content(paths.blob_data(referrer))
                    if references(payload).subject == subject:
                        return False  # pushed meanwhile
                except (PathNotFound, ManifestInvalid):
                    pass
            await self.writer.manifests.referrers.remove(subject, referrer)
            return True

        return repair

    def _index(self, subject: Digest, referrer: Digest) -> Repair:
        async def repair() -> bool:
            await self.writer.manifests.referrers.add(subject, referrer)
            return True

        return repair
