"""A repository of a pull-through cache: the registry's own repository of that name, read through
to the upstream for what it does not hold yet, with every write refused.

- Manifests by tag are checked upstream on every pull (a HEAD): the tag is moved when the
  upstream moved it, and what the upstream names is fetched if the cache lacks it. When the
  upstream cannot answer (down, refusing, or without the tag), the cached tag is served, as
  distribution does. Manifests by digest come from the cache, else from the upstream.
- Blobs come from the cache, else from the upstream (moorage.proxy.fetch); one the store holds
  for another repository is linked once the upstream confirms this repository has it.
- Tags are listed by the upstream, or from the cache when it cannot answer.
- Pushes, mounts into the repository and deletes answer UNSUPPORTED (405).

What is stored is stored as a push would store it (distribution's layout), with a record of
when it was fetched, for expiry (moorage.proxy.expiry).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import NoReturn, Protocol

from moorage.proxy import expiry
from moorage.proxy.fetch import Fetch, Fetches, Source
from moorage.proxy.flights import Flights
from moorage.proxy.routes import Route
from moorage.registry import manifests as schema
from moorage.registry.blobs import Arriving, BlobInfo, RepositoryBlobs
from moorage.registry.digest import DEFAULT_ALGORITHM, Digest
from moorage.registry.errors import (
    BlobUnknown,
    InsufficientStorage,
    ManifestUnknown,
    NameUnknown,
    QuotaExceeded,
    RegistryError,
    Unavailable,
    Unsupported,
)
from moorage.registry.manifest_store import PutResult, StoredManifest
from moorage.registry.names import parse_reference
from moorage.registry.repository import Registry, Repository
from moorage.storage import paths
from moorage.storage.driver import StorageError

log = logging.getLogger("moorage.proxy")


MANIFEST, BLOB, TAGS = "manifest", "blob", "tags"
CACHED, FETCHED, CONFIRMED, STALE, FAILED = "cached", "fetched", "confirmed", "stale", "failed"


class Observer(Protocol):
    """Where the cache's answers are counted (moorage.metrics.Metrics)."""

    def observe_proxy(self, upstream: str, kind: str, result: str) -> None: ...
    def observe_proxy_bytes(self, upstream: str, count: int) -> None: ...


class Unobserved:
    def observe_proxy(self, upstream: str, kind: str, result: str) -> None:
        return None

    def observe_proxy_bytes(self, upstream: str, count: int) -> None:
        return None


class Shared:
    """What every repository of one pull-through cache shares."""

    def __init__(
        self, registry: Registry, *, keep: bool, observer: Observer | None = None
    ) -> None:
        self.registry = registry
        self.keep = keep  # False: serve from the upstream without storing (read-only mode)
        self.observer = observer or Unobserved()
        self.fetches = Fetches()
        self.manifest_fetches: Flights[StoredManifest] = Flights()


class ProxyRepository:
    """moorage.registry.repository.RepositoryService for a name `route` covers, made for one
    request (PullThrough.repository)."""

    def __init__(self, local: Repository, route: Route, shared: Shared) -> None:
        self.local = local
        self.route = route
        self.shared = shared
        self.remote = route.remote(local.name)
        self.blobs = ProxyBlobs(self)
        self.manifests = ProxyManifests(self)
        self.tags = ProxyTags(self)
        self.uploads = RefusedUploads(self)

    @property
    def name(self) -> str:
        return self.local.name

    async def exists(self) -> bool:
        """Always: whether the repository exists is the upstream's to say, which its tags list
        tells (ProxyTags.all)."""
        return True

    def refuse(self) -> NoReturn:
        raise Unsupported(
            f"{self.name} is a pull-through cache of {self.route.upstream.shown}/{self.remote}: "
            "pushes and deletes are refused",
            detail={"name": self.name},
        )

    async def record(self, digest: Digest) -> None:
        await expiry.record(self.shared.registry.driver, self.name, digest)

    def observe(self, kind: str, result: str) -> None:
        self.shared.observer.observe_proxy(self.route.upstream.shown, kind, result)


class ProxyBlobs:
    def __init__(self, repository: ProxyRepository) -> None:
        self.repository = repository
        self.local = repository.local.blobs
        self.upstream = repository.route.upstream

    async def open(self, digest: Digest, *, content: bool = True) -> BlobInfo | Arriving:
        """From the cache; else, with `content`, the blob arriving from the upstream (or linked
        from the store, once the upstream confirms this repository has it); without, what the
        upstream says of it (a HEAD), nothing fetched."""
        repository = self.repository
        try:
            info = await self.local.stat(digest)
        except BlobUnknown:
            pass
        else:
            if content:
                repository.observe(BLOB, CACHED)
            return info
        if not content:
            running = repository.shared.fetches.running((repository.name, digest))
            if running is not None:
                return running.info
            size = await self.upstream.blob_size(repository.remote, digest, BlobUnknown)
            return BlobInfo(digest, size, digest)
        shared = repository.shared
        try:
            if shared.keep and await self._relink(digest):
                repository.observe(BLOB, CONFIRMED)
                return await self.local.stat(digest)
            fetch: Fetch = await shared.fetches.join(
                (repository.name, digest),
                digest,
                lambda: self._open(digest),
                shared.registry.blobs if shared.keep else None,
                lambda size: self._stored(digest, size),
            )
        except RegistryError:
            repository.observe(BLOB, FAILED)
            raise
        repository.observe(BLOB, FETCHED)
        return fetch

    async def _open(self, digest: Digest) -> Source:
        response, size = await self.upstream.open_blob(self.repository.remote, digest, BlobUnknown)
        self.repository.shared.observer.observe_proxy_bytes(self.upstream.shown, size)
        return Source(response, size, self.upstream.shown)

    async def _relink(self, digest: Digest) -> bool:
        """Links content the store already holds (fetched for another repository, or pushed),
        once the upstream confirms this repository has it: no byte is fetched again."""
        if digest.algorithm != paths.CONTENT_ALGORITHM:
            return False
        try:
            held = await self.repository.shared.registry.blobs.stat(digest)
        except BlobUnknown:
            return False
        size = await self.upstream.blob_size(self.repository.remote, digest, BlobUnknown)
        if size != held.size:
            return False
        try:
            await self._stored(digest, size)
        except (StorageError, QuotaExceeded) as exc:
            log.warning("linking %s into %s failed: %s", digest, self.repository.name, exc)
            return False
        return True

    async def _stored(self, digest: Digest, size: int) -> None:
        """Links a blob the store holds into the repository, within its quota (storage.quotas:
        QuotaExceeded leaves it unlinked, for the garbage collection), and records it."""
        async with self.local.admitted(digest, size):
            await self.local.link(digest)
        await self.repository.record(digest)

    async def mount(self, digest: Digest, source: RepositoryBlobs | None) -> BlobInfo | None:
        self.repository.refuse()

    async def delete(self, digest: Digest) -> None:
        self.repository.refuse()

    async def forget(self, digest: Digest) -> None:
        """The cached link's content is gone (collected): the next pull fetches it again."""
        await self.local.forget(digest)


class ProxyManifests:
    """One request's manifests: what `resolve` learnt is kept for `get`."""

    def __init__(self, repository: ProxyRepository) -> None:
        self.repository = repository
        self.local = repository.local.manifests
        self.upstream = repository.route.upstream
        self._held: Digest | None = None  # the cache holds it
        self._stale: Digest | None = None  # the cached tag's, the upstream failing
        self._fetched: StoredManifest | None = None  # fetched to learn the tag's digest

    async def resolve(self, reference: str) -> Digest:
        """A tag is asked of the upstream (a HEAD), and the cached tag moved where the
        upstream's points when the cache holds that manifest; when the upstream cannot answer,
        the cached tag names the manifest (served stale). A digest names itself: whether the
        upstream has it, `get` finds out."""
        try:
            return await self._resolve(reference)
        except RegistryError:
            self.repository.observe(MANIFEST, FAILED)
            raise

    async def _resolve(self, reference: str) -> Digest:
        tag = parse_reference(reference)
        if not isinstance(tag, str):
            return tag
        try:
            digest = await self.upstream.manifest_digest(
                self.repository.remote, tag, ManifestUnknown
            )
        except RegistryError as upstream_error:
            try:
                self._stale = await self.local.resolve(tag)
            except ManifestUnknown:
                raise upstream_error from None
            return self._stale
        if digest is None:  # the upstream's HEAD did not say: the manifest itself tells
            self._fetched = await self._fetch(None, tag)
            return self._fetched.digest
        if await self.local.exists(digest):
            self._held = digest
            if self.repository.shared.keep:
                await self._point(tag, digest)
        return digest

    async def get(self, reference: str, resolved: Digest | None = None) -> StoredManifest:
        try:
            digest = resolved or await self._resolve(reference)
            if self._fetched is not None and self._fetched.digest == digest:
                return self._fetched
            if digest == self._stale:
                self.repository.observe(MANIFEST, STALE)
                return await self.local.get(reference, digest)
            if digest == self._held or await self.local.exists(digest):
                self.repository.observe(MANIFEST, CACHED)
                return await self.local.get(str(digest), digest)
            tag = parse_reference(reference)
            return await self._fetch(digest, tag if isinstance(tag, str) else None)
        except RegistryError:
            self.repository.observe(MANIFEST, FAILED)
            raise

    async def _point(self, tag: str, digest: Digest) -> None:
        """Moves the cached tag where the upstream's points, if it moved."""
        tags = self.repository.local.tags
        try:
            current: Digest | None = await tags.get(tag)
        except ManifestUnknown:
            current = None
        if current != digest:
            try:
                await tags.tag(tag, digest)
            except StorageError as exc:
                log.warning("moving cached tag %s:%s failed: %s", self.repository.name, tag, exc)

    async def _fetch(self, digest: Digest | None, tag: str | None) -> StoredManifest:
        """The manifest from the upstream (by digest when known, else by tag), verified, and
        stored with the tag pointed at it. Fetched once for every request asking at once."""
        reference = str(digest) if digest is not None else str(tag)
        fetched = await self.repository.shared.manifest_fetches.run(
            (self.repository.name, reference), lambda: self._fetch_once(digest, tag)
        )
        self.repository.observe(MANIFEST, FETCHED)
        return fetched

    async def _fetch_once(self, digest: Digest | None, tag: str | None) -> StoredManifest:
        remote, shown = self.repository.remote, self.upstream.shown
        reference = str(digest) if digest is not None else str(tag)
        payload, content_type, named = await self.upstream.manifest(
            remote, reference, ManifestUnknown
        )
        if digest is None:
            usable = named is not None and Digest.of(payload, named.algorithm) == named
            digest = named if usable and named is not None else Digest.of(payload)
        elif Digest.of(payload, digest.algorithm) != digest:
            raise Unavailable(
                f"the upstream ({shown}) sent a manifest for {remote}@{digest} that does not "
                "match that digest"
            )
        schema.parse(payload, content_type)  # ManifestInvalid: nothing stored or served
        fetched = StoredManifest(digest, payload, schema.stored_media_type(digest, payload))
        if not self.repository.shared.keep:
            return fetched
        try:
            await self.local.put(
                str(digest),
                payload,
                content_type,
                [tag] if tag is not None else [],
                check_references=False,
            )
            await self.repository.record(digest)
        except (StorageError, InsufficientStorage, QuotaExceeded) as exc:
            log.warning("keeping manifest %s of %s failed: %s", digest, self.repository.name, exc)
        return fetched

    async def put(
        self, reference: str, payload: bytes, content_type: str | None, extra_tags: list[str]
    ) -> PutResult:
        self.repository.refuse()

    async def delete(self, reference: str) -> list[str]:
        self.repository.refuse()

    async def referrer_descriptors(
        self, subject: Digest, artifact_type: str | None
    ) -> list[schema.Descriptor]:
        """The referrers the cache holds."""
        return await self.local.referrer_descriptors(subject, artifact_type)


class ProxyTags:
    def __init__(self, repository: ProxyRepository) -> None:
        self.repository = repository

    async def all(self) -> list[str]:
        repository = self.repository
        try:
            tags = await repository.route.upstream.tags(repository.remote, NameUnknown)
        except RegistryError as upstream_error:
            if await repository.local.exists():
                repository.observe(TAGS, STALE)
                return await repository.local.tags.all()
            repository.observe(TAGS, FAILED)
            raise upstream_error from None
        repository.observe(TAGS, FETCHED)
        return tags


class RefusedUploads:
    """Uploads into a cached repository: every one refused."""

    def __init__(self, repository: ProxyRepository) -> None:
        self.repository = repository

    async def start(self, algorithm: str = DEFAULT_ALGORITHM) -> str:
        self.repository.refuse()

    async def size(self, upload_id: str) -> int:
        self.repository.refuse()

    async def append(
        self,
        upload_id: str,
        body: AsyncIterator[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> int:
        self.repository.refuse()

    async def upload(self, digest: Digest, body: AsyncIterator[bytes]) -> BlobInfo:
        self.repository.refuse()

    async def commit(
        self, upload_id: str, digest: Digest, body: AsyncIterator[bytes] | None = None
    ) -> BlobInfo:
        self.repository.refuse()

    async def cancel(self, upload_id: str) -> None:
        self.repository.refuse()
