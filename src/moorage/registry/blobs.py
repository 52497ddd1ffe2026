"""Blobs: the content store shared by all repositories, and each repository's view of it.

A blob belongs to a repository when the repository links it (`_layers`, or a manifest revision:
manifests are blobs too). Unlinking is what a blob DELETE does; content goes only with garbage
collection, since other repositories may link the same digest. Whoever links content claims it
(BlobStore.claim), which is what keeps a collection running at the same time from deleting it
(moorage.registry.sweeps).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO, Protocol

from moorage.registry.admission import Admission
from moorage.registry.catalog import Catalog
from moorage.registry.digest import Digest, new_hasher
from moorage.registry.errors import BlobUnknown, Unavailable, Unsupported
from moorage.registry.space import needs_space
from moorage.registry.sweeps import Sweeps
from moorage.registry.uses import Uses
from moorage.storage import paths
from moorage.storage.cache import BlobDescriptorCache, CachedBlob, CacheUnavailable
from moorage.storage.driver import FileInfo, FileWriter, PathNotFound, StorageDriver
from moorage.storage.middleware import Redirector, from_driver

SMALL_CONTENT_CACHE = 32 * 1024 * 1024  # bytes of manifests kept in memory
DEFAULT_DELAY = 3600.0  # storage.maintenance.gc.delay: content unused this long may be collected
CLAIM_ATTEMPTS = 3  # a writer's tries to store what a collection keeps deleting under it


@dataclass(frozen=True)
class BlobInfo:
    digest: Digest
    size: int
    stored: Digest  # the digest the content is stored under (see paths: CONTENT_ALGORITHM)


class Arriving(Protocol):
    """A blob on its way into the store (a pull-through cache's fetch from its upstream),
    readable while it arrives: from a file that fills as it does (for zero-copy sendfile), or
    in chunks. Either raises a RegistryError (Unavailable) when the blob cannot be completed:
    the answer must then be cut short, since its status has been sent."""

    @property
    def info(self) -> BlobInfo: ...

    @property
    def file(self) -> BinaryIO:
        """The file the bytes arrive in, at their offsets; read it only at explicit offsets
        (its position is anyone's)."""
        ...

    async def ready(self, offset: int) -> int:
        """Waits until the file holds bytes from `offset` on, and returns where they end (the
        blob's size once it is whole, `offset` itself at its end)."""
        ...

    def chunks(self, offset: int) -> AsyncIterator[bytes]:
        """The blob's bytes from `offset` to its end, as they arrive."""
        ...


async def read_link(driver: StorageDriver, path: str) -> Digest | None:
    """The digest a link file names; None when there is no link or it names nothing valid."""
    try:
        content = await driver.get_content(path)
    except PathNotFound:
        return None
    return Digest.parse_or_none(content.decode("ascii", "replace").strip())


async def write_link(driver: StorageDriver, path: str, digest: Digest) -> None:
    await driver.put_content(path, str(digest).encode())


async def child_names(driver: StorageDriver, path: str) -> list[str]:
    """Names of a directory's children; none when it does not exist."""
    try:
        return [child.rpartition("/")[2] for child in await driver.list(path)]
    except PathNotFound:
        return []


async def digests_below(driver: StorageDriver, directory: str) -> list[Digest]:
    """The digests named by the `<alg>/<hex>` directories below `directory` (`_layers`, the
    manifest revisions, a subject's referrers), sorted; names that are no digest are skipped.
    A directory may have lost its link file: distribution's deletes remove the file only."""
    found = []
    for algorithm in await child_names(driver, directory):
        for hex_ in await child_names(driver, f"{directory}/{algorithm}"):
            digest = Digest.parse_or_none(f"{algorithm}:{hex_}")
            if digest is not None:
                found.append(digest)
    return sorted(found)


async def content_hex(
    driver: StorageDriver,
    path: str,
    algorithm: str,
    progress: Callable[[int], None] | None = None,
) -> str:
    """The hex digest in `algorithm` of the file at `path`, streamed: each chunk is hashed on
    a worker thread (hashlib releases the GIL on large buffers) so the event loop stays free;
    `progress(n)` is called after each chunk of n bytes."""
    hasher = new_hasher(algorithm)
    async for chunk in driver.reader(path):
        await asyncio.to_thread(hasher.update, chunk)
        if progress is not None:
            progress(len(chunk))
    return hasher.hexdigest()


class BlobStore:
    """Content by digest, for the whole registry."""

    def __init__(
        self,
        driver: StorageDriver,
        cache: BlobDescriptorCache | None = None,
        redirector: Redirector | None = None,
        *,
        delay: float = DEFAULT_DELAY,
    ) -> None:
        """`delay` is the garbage collection's (storage.maintenance.gc.delay): content used
        within it is kept. 0 is for collections of a stopped registry: uses are not recorded."""
        self.driver = driver
        self.cache = cache
        self.redirector = redirector or from_driver(driver.redirect_url)
        self.sweeps = Sweeps(driver)
        # A claim leaves content touched this recently alone: a collection deletes only what
        # is older than `delay`, within delay/2 of its start (moorage.lifecycle.gc).
        self.recent = delay / 4 if delay > 0 else None
        self.uses = Uses(self.use, delay / 8) if delay > 0 else None
        self._small: OrderedDict[Digest, bytes] = OrderedDict()
        self._small_bytes = 0

    async def stat(self, digest: Digest) -> BlobInfo:
        if self.cache is not None and (hit := await self.cache.get(None, digest)) is not None:
            return BlobInfo(digest, hit.size, hit.stored)
        try:
            info = await self.driver.stat(paths.blob_data(digest))
        except PathNotFound:
            raise BlobUnknown(detail={"digest": str(digest)}) from None
        if self.cache is not None:
            await self.cache.set(None, digest, CachedBlob(digest, info.size))
        return BlobInfo(digest, info.size, digest)

    async def forget(self, digest: Digest) -> None:
        """Drops what the cache knows of the content under `digest`, for whoever removes it or
        finds it gone. Raises Unavailable when a shared cache cannot be reached."""
        if self.cache is not None:
            try:
                await self.cache.forget(None, digest)
            except CacheUnavailable as exc:
                raise Unavailable(f"the cache cannot be reached ({exc})") from None

    async def digests(self) -> AsyncIterator[Digest]:
        """Every digest content is stored under, shard by shard, in order. The content of one
        may be gone meanwhile (its directory left behind)."""
        algorithms = await child_names(self.driver, paths.BLOBS)
        for algorithm in sorted(algorithms):
            shards = await child_names(self.driver, paths.blob_algorithm(algorithm))
            for prefix in sorted(shards):
                shard = paths.blob_shard(algorithm, prefix)
                for hex_ in sorted(await child_names(self.driver, shard)):
                    digest = Digest.parse_or_none(f"{algorithm}:{hex_}")
                    if digest is not None and hex_.startswith(prefix):
                        yield digest

    async def exists(self, digest: Digest) -> bool:
        try:
            await self.stat(digest)
        except BlobUnknown:
            return False
        return True

    async def get(self, digest: Digest) -> bytes:
        """The whole content: for manifests, never for layers. Kept in a bounded in-process
        cache: content under a digest never changes."""
        cached = self._small.get(digest)
        if cached is not None:
            self._small.move_to_end(digest)
            return cached
        try:
            content = await self.driver.get_content(paths.blob_data(digest))
        except PathNotFound:
            raise BlobUnknown(detail={"digest": str(digest)}) from None
        self._small[digest] = content
        self._small_bytes += len(content)
        while self._small_bytes > SMALL_CONTENT_CACHE:
            _, dropped = self._small.popitem(last=False)
            self._small_bytes -= len(dropped)
        return content

    async def put(self, content: bytes, digest: Digest) -> None:
        """Stores small content (a manifest) under its digest, computed by the caller, unless
        storage has it (the cache is not asked: it may not know of a collection)."""
        if await self.content(digest) is None:
            await self.driver.put_content(paths.blob_data(digest), content)

    async def ingest(self, source: str, digest: Digest) -> None:
        """Moves a verified upload's data into place, unless storage has the content already
        (same digest, same bytes): then the data stays where it is, for the caller to drop."""
        if await self.content(digest) is None:
            await self.driver.move(source, paths.blob_data(digest))

    async def content(self, digest: Digest) -> FileInfo | None:
        """The file holding the content, from storage (never the cache); None when there is
        none."""
        try:
            info = await self.driver.stat(paths.blob_data(digest))
        except PathNotFound:
            return None
        return None if info.is_dir else info

    async def use(self, digest: Digest) -> bool:
        """Renews the content's modification time unless it is recent; False when there is no
        content."""
        info = await self.content(digest)
        if info is None:
            return False
        if self.recent is not None and info.modified < time.time() - self.recent:
            try:
                await self.driver.touch(paths.blob_data(digest))
            except PathNotFound:
                return False
        return True

    def note_use(self, digest: Digest) -> None:
        """Records a read of the content that may lead to a claim (moorage.registry.uses)."""
        if self.uses is not None:
            self.uses.note(digest)

    async def claim(self, digests: Iterable[Digest]) -> set[Digest]:
        """Marks the content under each digest as in use and returns the digests whose
        content is gone, deleted by a garbage collection (or never there): once this returns,
        a collection keeps the rest for `delay`. The caller must have written its links to the
        content first, and check them again after (moorage.registry.sweeps says why)."""
        wanted = sorted(set(digests))
        used = await asyncio.gather(*(self.use(digest) for digest in wanted))
        await self.sweeps.wait({digest for digest, ok in zip(wanted, used, strict=True) if ok})
        gone = {digest for digest in wanted if await self.content(digest) is None}
        for digest in gone:  # so that the client's next look finds it missing and pushes it
            with contextlib.suppress(Unavailable):
                await self.forget(digest)
        return gone

    async def writer(self, digest: Digest) -> FileWriter:
        """A writer of the content under `digest` (of CONTENT_ALGORITHM), streamed: nothing is
        stored until `commit`, which the caller makes only once it has verified the bytes
        against the digest, and which replaces content already there (the same bytes)."""
        return await self.driver.writer(paths.blob_data(digest))

    def reader(self, digest: Digest, offset: int = 0) -> AsyncIterator[bytes]:
        return self.driver.reader(paths.blob_data(digest), offset)

    def local_file(self, digest: Digest) -> str | None:
        return self.driver.local_file(paths.blob_data(digest))

    async def redirect_url(self, digest: Digest, client: str | None = None) -> str | None:
        """Where the client (its address, when known) may fetch the blob instead, or None."""
        return await self.redirector(paths.blob_data(digest), client)


class RepositoryBlobs:
    """The blobs one repository links."""

    def __init__(
        self,
        driver: StorageDriver,
        store: BlobStore,
        name: str,
        *,
        deletes: bool,
        catalog: Catalog | None = None,
        admission: Admission | None = None,
    ) -> None:
        self.driver = driver
        self.store = store
        self.name = name
        self.deletes = deletes
        self.catalog = catalog
        self.admission = admission

    @contextlib.asynccontextmanager
    async def admitted(self, digest: Digest, size: int) -> AsyncIterator[None]:
        """Runs the block that links `digest` (`size` bytes) here once the admission (quotas)
        lets the repository take it: at once when nothing is checked or the repository links
        it already. Raises QuotaExceeded before the block otherwise."""
        admission = self.admission
        if admission is None or not admission.applies(self.name) or await self.is_linked(digest):
            yield
            return
        async with admission.reserve(self.name, size):
            yield

    async def links(self) -> list[Digest]:
        """The digests this repository has `_layers` entries for, sorted (an entry may have lost
        its link file: see digests_below)."""
        return await digests_below(self.driver, paths.layers(self.name))

    async def stored(self, digest: Digest) -> Digest | None:
        """The digest this repository's link for `digest` names, which the content is stored
        under: `digest` itself, or its sha256 for a sha512 blob. None when it is not linked."""
        for link in (
            paths.layer_link(self.name, digest),
            paths.manifest_revision_link(self.name, digest),
        ):
            stored = await read_link(self.driver, link)
            if stored is not None:
                return stored
        return None

    async def is_linked(self, digest: Digest) -> bool:
        cache = self.store.cache
        if cache is not None and await cache.get(self.name, digest) is not None:
            return True
        return await self.stored(digest) is not None

    async def stat(self, digest: Digest) -> BlobInfo:
        """Raises BlobUnknown unless the blob is linked here and its content exists."""
        cache = self.store.cache
        if cache is not None and (hit := await cache.get(self.name, digest)) is not None:
            self.store.note_use(hit.stored)
            return BlobInfo(digest, hit.size, hit.stored)
        stored = await self.stored(digest)
        if stored is None:
            raise BlobUnknown(detail={"digest": str(digest)})
        try:
            info = await self.store.stat(stored)
        except BlobUnknown:
            raise BlobUnknown(detail={"digest": str(digest)}) from None
        if cache is not None:
            await cache.set(self.name, digest, CachedBlob(stored, info.size))
        self.store.note_use(stored)
        return BlobInfo(digest, info.size, stored)

    async def open(self, digest: Digest, *, content: bool = True) -> BlobInfo:
        """The blob to serve for a GET or HEAD (a pull): what `stat` says (a blob linked here
        is stored whole: it is never arriving)."""
        return await self.stat(digest)

    async def forget(self, digest: Digest) -> None:
        """Drops what the cache knows of this repository's link for `digest`. Raises
        Unavailable when a shared cache cannot be reached."""
        if self.store.cache is not None:
            try:
                await self.store.cache.forget(self.name, digest)
            except CacheUnavailable as exc:
                raise Unavailable(
                    f"deletes are refused while the cache cannot be reached ({exc}); "
                    "pulls go on from storage"
                ) from None

    async def unlink(self, directory: str, digest: Digest) -> bool:
        """Deletes a link's directory with the cache kept true: forgotten before (so no delete
        happens that the cache could not follow) and after (so a reader that cached the link
        in between does not keep it). False when the directory was already gone (a concurrent
        delete took it)."""
        await self.forget(digest)
        try:
            await self.driver.delete(directory)
        except PathNotFound:
            return False
        finally:
            with contextlib.suppress(Unavailable):
                await self.forget(digest)
        return True

    async def link(self, digest: Digest, stored: Digest | None = None) -> None:
        """Links `digest` to the content stored under `stored` (by default, under `digest`)."""
        await write_link(self.driver, paths.layer_link(self.name, digest), stored or digest)
        if self.catalog is not None:
            self.catalog.add(self.name)  # a first link is what makes a repository

    async def has_link(self, digest: Digest, stored: Digest) -> bool:
        """Whether storage has this repository's link of `digest` to `stored`."""
        return await read_link(self.driver, paths.layer_link(self.name, digest)) == stored

    @needs_space
    async def mount(self, digest: Digest, source: RepositoryBlobs | None) -> BlobInfo | None:
        """Links a blob already in the registry: from `source` when named, else from anywhere.
        None when there is nothing to mount (or a garbage collection took it meanwhile), so
        the caller falls back to an upload."""
        try:
            info = await (source.stat(digest) if source else self.store.stat(digest))
        except BlobUnknown:
            return None
        async with self.admitted(digest, info.size):
            await self.link(digest, info.stored)
        if await self.store.claim([info.stored]) or not await self.has_link(digest, info.stored):
            link = paths.layer_link(self.name, digest)
            with contextlib.suppress(Unavailable):
                await self.unlink(link.rpartition("/")[0], digest)
            return None
        return info

    async def delete(self, digest: Digest) -> None:
        if not self.deletes:
            raise Unsupported("deletes are disabled on this registry")
        link = paths.layer_link(self.name, digest)
        if await read_link(self.driver, link) is None or not await self.unlink(
            link.rpartition("/")[0], digest
        ):
            raise BlobUnknown(detail={"digest": str(digest)})
