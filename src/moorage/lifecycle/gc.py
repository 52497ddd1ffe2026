"""Garbage collection: mark every blob reachable from a manifest that is kept and sweep the rest,
on any driver, while the registry goes on serving (moorage.registry.sweeps is the handshake with
writers that makes that safe).

Kept: every manifest revision whose content is stored. With `delete_untagged`: the tagged ones,
those used within `delay` (a push under way: children and referrers are pushed by digest before
what makes them reachable), and, from those, the children of every kept index and every manifest
whose subject is kept (signatures, SBOMs, attestations), recursively. Marked: each kept manifest,
the content its config and layers' links name, and its children.

Retention policies (lifecycle/retention.py) decide per repository, where one covers it, whether
untagged manifests go (`deleteuntagged`, else `delete_untagged`) and whether, when they do, a
referrer whose subject the repository does not have goes too (`deletereferrers`); in a repository
no policy covers, such a referrer goes with the other untagged manifests.

Swept, each only when its content has not been used for `delay`, under an announcement:
- with `delete_untagged`, the revisions no longer kept: the revision link, its entries in tags'
  histories, its entry in the referrers index and its pull record (and the pull records of
  manifests the repository no longer has);
- layer links that no kept manifest of their repository names (distribution leaves these);
- content that no kept manifest names;
then a repository left with nothing is pruned from storage and leaves the catalog. The caches
forget each link and content before it goes, and again after.

A collection deletes nothing after `delay`/2 from its start (it stops, and the next one goes
on): writers leave recently used content untouched for `delay`/4, which this keeps safe. With
`delay` 0 nothing is in use: that is only for a registry that is stopped or read-only.

Memory: the mark set (one entry per marked blob), what is to be swept (one entry per link or blob
to delete) and one repository's manifests at a time; never a copy of the tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from moorage.lifecycle.inventory import Inventory, inventory
from moorage.lifecycle.references import References, references
from moorage.lifecycle.retention import CollectorRules, Retention
from moorage.registry.blobs import DEFAULT_DELAY, RepositoryBlobs, child_names, read_link
from moorage.registry.digest import Digest
from moorage.registry.errors import ManifestInvalid, NameInvalid
from moorage.registry.manifest_store import Referrers
from moorage.registry.names import check_name
from moorage.registry.repository import Registry
from moorage.registry.sweeps import Announcement
from moorage.storage import paths
from moorage.storage.driver import PathNotFound

log = logging.getLogger("moorage.gc")

CONCURRENCY = 16  # repositories read, or sweeps made, at a time
BATCH = 64  # digests per announcement
T = TypeVar("T")
# A passage run right before each scheduled collection, under its lease: (registry, dryrun).
# Retention policies untag there, so that what they release is collected at once.
Pass = Callable[[Registry, bool], Awaitable[None]]


@dataclass(frozen=True)
class Options:
    delay: float = DEFAULT_DELAY  # seconds: content used within this is kept
    delete_untagged: bool = False
    dryrun: bool = False


@dataclass(frozen=True)
class Event:
    """One thing deleted (or, in a dry run, that would be)."""

    kind: str  # "manifest", "link", "blob", "repository"
    repository: str | None
    digest: Digest | None
    size: int = 0  # bytes, for a blob


@dataclass
class Summary:
    manifests: int = 0  # revisions removed
    links: int = 0  # layer links removed
    blobs: int = 0  # contents deleted
    bytes: int = 0  # their size
    repositories: int = 0  # emptied and pruned
    marked: int = 0  # blobs kept because a kept manifest names them
    unreadable: list[str] = field(default_factory=list)  # repository@digest of bad manifests
    stopped: str = ""  # why the collection ended before sweeping everything, if it did


class Stopped(Exception):
    """The collection may not delete any more: past its deadline, or its lease is lost."""


def _key(digest: Digest) -> bytes:
    """A compact, hashable form of a digest for the mark set and the sweep lists."""
    if digest.algorithm == paths.CONTENT_ALGORITHM:
        return bytes.fromhex(digest.hex)
    return str(digest).encode()


def _digest(key: bytes) -> Digest:
    if len(key) == 32:
        return Digest(paths.CONTENT_ALGORITHM, key.hex())
    return Digest.parse(key.decode())


async def each(items: Iterable[T], work: Callable[[T], Awaitable[None]]) -> None:
    """Runs `work` on every item, CONCURRENCY at a time; the first failure stops the rest and
    is raised."""
    pending = iter(items)

    async def worker() -> None:
        for item in pending:  # shared: each item goes to the first worker free
            await work(item)

    workers = [asyncio.ensure_future(worker()) for _ in range(CONCURRENCY)]
    try:
        await asyncio.gather(*workers)
    except BaseException:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
        raise


class Collector:
    def __init__(
        self,
        registry: Registry,
        options: Options,
        *,
        report: Callable[[Event], None] | None = None,
        held: Callable[[], bool] | None = None,
        retention: Retention | None = None,
    ) -> None:
        """`report` hears of each deletion as it is made; `held` says whether the lease under
        which the collection runs is still held; `retention`'s policies say, for the
        repositories they cover, what may be removed."""
        self.registry = registry
        self.retention = retention
        self.driver = registry.driver
        self.store = registry.blobs
        self.options = options
        self.report = report
        self.held = held
        self.summary = Summary()
        self.started = 0.0
        self._marked: set[bytes] = set()
        # content -> the links to it to remove: (repository, the link's digest when it is not
        # the content's own, a sha512 blob's)
        self._orphans: dict[bytes, list[tuple[str, Digest | None]]] = {}
        self._content: dict[bytes, int] = {}  # content to delete -> its size
        self._emptied: list[str] = []  # repositories that may be left with nothing

    # -- the whole collection ---------------------------------------------------------------

    async def collect(self) -> Summary:
        """Raises StorageError, or Unavailable when a shared cache cannot be reached (nothing is
        deleted that the cache could not forget)."""
        self.started = time.time()
        if not self.options.dryrun:
            await self.store.sweeps.remove_stale()
        names = await self.registry.walk(paths.REPOSITORY_MARKER, paths.MANIFESTS_MARKER)
        try:
            await each(names, self._repository)
            await self._find_content()
            self.summary.marked = len(self._marked)
            self._marked.clear()
            await self._sweep()
            await self._prune()
        except Stopped as exc:
            self.summary.stopped = str(exc)
        return self.summary

    def _old(self, modified: float) -> bool:
        """Whether content last used at `modified` is unused for `delay`."""
        return modified < time.time() - self.options.delay

    def _check(self, announcement: Announcement | None = None) -> None:
        """Raises Stopped unless the collection may go on deleting."""
        delay = self.options.delay
        if delay > 0 and time.time() > self.started + delay / 2:
            raise Stopped(f"stopped at half the delay ({delay / 2:.0f}s): the next one goes on")
        if self.held is not None and not self.held():
            raise Stopped("the lease on this root was lost")
        if announcement is not None and not announcement.fresh():
            raise Stopped("a sweep took too long to be heeded")

    def _emit(
        self, kind: str, repository: str | None, digest: Digest | None, size: int = 0
    ) -> None:
        if self.report is not None:
            self.report(Event(kind, repository, digest, size))

    def rules(self, name: str) -> CollectorRules:
        """What may be removed from the repository: as its retention policy says, else
        untagged manifests with `delete_untagged`, referrers without a subject among them."""
        own = self.options.delete_untagged
        if self.retention is None or self.retention.policy_for(name) is None:
            return CollectorRules(own, own)
        return self.retention.collector_rules(name, own)

    # -- marking, one repository at a time ---------------------------------------------------

    async def _repository(self, name: str) -> None:
        try:
            check_name(name)
        except NameInvalid:
            return  # never served: left to fsck
        rules = self.rules(name)
        files = await inventory(self.driver, name, everything=rules.delete_untagged)
        manifests: dict[Digest, References | None] = {}
        for digest in files.revisions:
            try:
                payload = await self.driver.get_content(paths.blob_data(digest))
            except PathNotFound:
                continue  # content gone: nothing to keep (fsck reports the revision)
            try:
                manifests[digest] = references(payload)
            except ManifestInvalid:
                manifests[digest] = None
                self.summary.unreadable.append(f"{name}@{digest}")
        kept: Collection[Digest] = set(manifests)
        if rules.delete_untagged:
            kept = await self._untagged(files, manifests, rules.delete_referrers)
            await self._stale_pulls(files)
        referenced: set[Digest] = set()
        keep_links = False
        for digest in kept:
            self._marked.add(_key(digest))
            refs = manifests[digest]
            if refs is None:
                keep_links = True  # what it names cannot be told: its links stay
                continue
            for blob in refs.blobs:
                referenced.add(blob)
                stored = await self._stored(files, blob)
                if stored is not None:  # and its link, for a sha512 blob's content
                    referenced.add(stored)
                    self._marked.add(_key(stored))
            for child in refs.children:
                self._marked.add(_key(child))
        orphans = 0
        for digest in files.layers:
            if keep_links or digest in referenced:
                continue
            stored = await self._stored(files, digest) or digest
            entry = (name, None if stored == digest else digest)
            self._orphans.setdefault(_key(stored), []).append(entry)
            orphans += 1
        if not kept and orphans == len(files.layers):
            self._emptied.append(name)  # pruned after the sweep, if nothing stays

    async def _stored(self, files: Inventory, digest: Digest) -> Digest | None:
        """The digest the content of a blob named `digest` is stored under: its own, or for
        another algorithm than sha256, what the repository's link names."""
        if digest.algorithm == paths.CONTENT_ALGORITHM:
            return digest
        return await read_link(self.driver, paths.layer_link(files.name, digest))

    async def _untagged(
        self,
        files: Inventory,
        manifests: dict[Digest, References | None],
        delete_referrers: bool,
    ) -> set[Digest]:
        """The manifests kept when untagged ones go: removes the others, and returns those.
        Without `delete_referrers`, a referrer whose subject the repository lacks is kept."""
        roots: set[Digest] = set()
        for link in files.tags.values():
            digest = await read_link(self.driver, link)
            if digest in manifests:
                roots.add(digest)
        if not delete_referrers:
            for digest, refs in manifests.items():
                if refs is not None and refs.subject is not None and refs.subject not in manifests:
                    roots.add(digest)
        for digest in set(manifests) - roots:
            info = await self.store.content(digest)
            if info is None or not self._old(info.modified):
                roots.add(digest)  # a push under way, or used since
        kept = _reachable(roots, manifests)
        doomed = set(manifests) - kept
        if not doomed:
            return kept
        self._check()
        announcement = None if self.options.dryrun else await self.store.sweeps.announce(doomed)
        try:
            used = set()
            for digest in doomed:
                info = await self.store.content(digest)
                if info is None or not self._old(info.modified):
                    used.add(digest)
            kept = _reachable(roots | used, manifests)
            for digest in sorted(set(manifests) - kept):
                self._check(announcement)
                await self._remove_manifest(files, digest, manifests[digest])
        finally:
            if announcement is not None:
                await self.store.sweeps.withdraw(announcement)
        if files.referrers and not self.options.dryrun:  # subjects left without referrers
            repository = paths.repository(files.name)
            await self.driver.prune(paths.referrer_subjects(files.name), repository)
        return kept

    async def _remove_manifest(
        self, files: Inventory, digest: Digest, refs: References | None
    ) -> None:
        name = files.name
        self.summary.manifests += 1
        self._emit("manifest", name, digest)
        if self.options.dryrun:
            return
        for entry in files.history.get(digest, []):
            with contextlib.suppress(PathNotFound):
                await self.driver.delete(entry.rpartition("/")[0])
        if refs is not None and refs.subject is not None:
            await Referrers(self.driver, name).remove(refs.subject, digest)
        revision = files.revisions[digest].rpartition("/")[0]
        await self._blobs(name).unlink(revision, digest)
        if digest in files.pulls:
            with contextlib.suppress(PathNotFound):
                await self.driver.delete(files.pulls[digest][0])

    async def _stale_pulls(self, files: Inventory) -> None:
        """Deletes the pull records of manifests the repository did not have when listed
        (deleted by a client), those written before this collection began (one written since
        may be of a manifest pushed since), and prunes what they leave empty."""
        if self.options.dryrun or not files.pulls:
            return
        for digest, (path, modified) in files.pulls.items():
            if digest not in files.revisions and modified < self.started:
                with contextlib.suppress(PathNotFound):
                    await self.driver.delete(path)
        await self.driver.prune(paths.manifest_pulls(files.name), paths.repository(files.name))

    # -- sweeping ------------------------------------------------------------------------------

    async def _find_content(self) -> None:
        """Lists every blob's content, shard by shard: what is neither marked nor used within
        `delay` is to be deleted."""
        unused_since = time.time() - self.options.delay
        for algorithm in await child_names(self.driver, paths.BLOBS):
            for prefix in await child_names(self.driver, paths.blob_algorithm(algorithm)):
                shard = paths.blob_shard(algorithm, prefix)
                async for info in self.driver.files_named(shard, "data"):
                    hex_ = info.path.rsplit("/", 2)[1]
                    if not hex_.startswith(prefix):
                        continue
                    if algorithm == paths.CONTENT_ALGORITHM and len(hex_) == 64:
                        try:
                            key = bytes.fromhex(hex_)
                        except ValueError:
                            continue
                    elif (digest := Digest.parse_or_none(f"{algorithm}:{hex_}")) is not None:
                        key = _key(digest)
                    else:
                        continue
                    if key not in self._marked and info.modified < unused_since:
                        self._content[key] = info.size

    async def _sweep(self) -> None:
        keys = sorted(self._content.keys() | self._orphans.keys())
        for start in range(0, len(keys), BATCH):
            self._check()
            batch = keys[start : start + BATCH]
            digests = [_digest(key) for key in batch]
            announcement = (
                None if self.options.dryrun else await self.store.sweeps.announce(digests)
            )
            try:
                await each(batch, functools.partial(self._sweep_one, announcement=announcement))
            finally:
                if announcement is not None:
                    await self.store.sweeps.withdraw(announcement)

    async def _sweep_one(self, key: bytes, announcement: Announcement | None) -> None:
        digest = _digest(key)
        info = await self.store.content(digest)
        if info is not None and not self._old(info.modified):
            return  # used since it was listed: kept, links and all
        self._check(announcement)
        for name, other in self._orphans.get(key, []):
            linked = other or digest
            self.summary.links += 1
            self._emit("link", name, linked)
            if not self.options.dryrun:
                link = paths.layer_link(name, linked).rpartition("/")[0]
                await self._blobs(name).unlink(link, linked)
        if key not in self._content or info is None:
            return
        self.summary.blobs += 1
        self.summary.bytes += info.size
        self._emit("blob", None, digest, info.size)
        if self.options.dryrun:
            return
        await self.store.forget(digest)
        with contextlib.suppress(PathNotFound):
            await self.driver.delete(paths.blob_dir(digest))
        await self.store.forget(digest)

    def _blobs(self, name: str) -> RepositoryBlobs:
        """A repository's links, kept true in the cache: made for each use rather than taken
        from the registry's views, which would keep one for every repository swept."""
        return RepositoryBlobs(self.driver, self.store, name, deletes=True)

    async def _prune(self) -> None:
        for name in self._emptied:
            if self.options.dryrun:
                self.summary.repositories += 1
                self._emit("repository", name, None)
                continue
            # its pull times go with it (a repository pushed and pulled again meanwhile loses
            # those, which only makes its tags look never pulled)
            with contextlib.suppress(PathNotFound):
                await self.driver.delete(paths.pulls(name))
            await self.driver.prune(paths.repository(name), paths.REPOSITORIES)
            try:
                await self.driver.stat(paths.layers(name))
                continue  # something in it was kept (or pushed since)
            except PathNotFound:
                pass
            await self.registry.catalog.remove(name)
            self.summary.repositories += 1
            self._emit("repository", name, None)


def _reachable(roots: set[Digest], manifests: dict[Digest, References | None]) -> set[Digest]:
    """`roots` with, recursively, the children of each index among them and each manifest whose
    subject is among them, as far as the repository has them."""
    referrers: dict[Digest, list[Digest]] = {}
    for digest, refs in manifests.items():
        if refs is not None and refs.subject is not None:
            referrers.setdefault(refs.subject, []).append(digest)
    kept: set[Digest] = set()
    pending = [digest for digest in roots if digest in manifests]
    while pending:
        digest = pending.pop()
        if digest in kept:
            continue
        kept.add(digest)
        refs = manifests[digest]
        if refs is not None:
            pending += [child for child in refs.children if child in manifests]
        pending += referrers.get(digest, [])
    return kept
