"""The repository services with events around them, as distribution's notifications listener
wraps its repository: after an operation succeeds, its events are appended to the spool, and
only then does the API answer. Handlers never emit events; they call these services.

Which operations emit what follows distribution: a manifest GET or HEAD is a pull (with the tag
when pulled by tag; a 304 never gets here), a blob GET or HEAD is a pull (a 304 too, as in
distribution), a manifest PUT a push (with the tag, none when pushed by digest; one per tag for
OCI's `?tag=`), a finished upload a blob push, a cross-repository mount a mount, a blob DELETE a
delete of the digest, a manifest DELETE by digest a delete of the digest followed by one delete
per tag it carried, and a DELETE by tag a delete of that tag (current distribution; 2.8 refused
it). The repository wrapped is whatever the API's namespace serves: a pull through the
pull-through cache (moorage.proxy) is a pull like any other, and what the cache stores of it
makes no event (it writes beneath the wrapper), as distribution's listener wraps its cache.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from moorage.notifications import events
from moorage.registry import manifests as schema
from moorage.registry.blobs import Arriving, BlobInfo, RepositoryBlobs
from moorage.registry.context import Client, RequestContext
from moorage.registry.digest import DEFAULT_ALGORITHM, Digest
from moorage.registry.manifest_store import PutResult, StoredManifest
from moorage.registry.repository import (
    BlobService,
    ManifestService,
    RepositoryService,
    TagService,
    UploadService,
)

log = logging.getLogger("moorage.notifications")

MAX_REFERENCES = 16_384  # manifests whose references are kept, by digest
MAX_CLIENTS = 4096  # clients whose part of the records is kept


@dataclass(frozen=True)
class Filter:
    """What one endpoint does not want: actions, and target media types."""

    actions: frozenset[str] = frozenset()
    media_types: frozenset[str] = frozenset()

    def wants(self, action: str, media_type: str) -> bool:
        return action not in self.actions and media_type not in self.media_types


@dataclass
class Recorder:
    """The request path's half of notifications: makes the records of what happened and
    appends them, in one write per request, to the spool. Events no endpoint wants are never
    made. `append` writes to the spool: it returns None when the records are there already
    (a file spool), else an awaitable done when they are (Redis)."""

    append: Callable[[list[str]], Awaitable[None] | None]
    filters: list[Filter]
    include_references: bool
    source: events.Source
    put: Callable[[str], None] | None = None  # one record, there when it returns (files)
    ids: events.Ids = field(default_factory=events.Ids)
    clock: events.Clock = field(default_factory=events.Clock)
    _wanted: dict[tuple[str, str], bool] = field(default_factory=dict)
    _references: dict[Digest, str] = field(default_factory=dict)
    _clients: dict[Client, str] = field(default_factory=dict)

    def wants(self, action: str, media_type: str = "") -> bool:
        key = (action, media_type)
        found = self._wanted.get(key)
        if found is None:
            if len(self._wanted) > 1024:  # media types come from manifests: keep it bounded
                self._wanted.clear()
            found = self._wanted[key] = any(f.wants(action, media_type) for f in self.filters)
        return found

    def references(self, digest: Digest, payload: bytes) -> str:
        if not self.include_references:
            return ""
        found = self._references.get(digest)
        if found is None:
            if len(self._references) >= MAX_REFERENCES:
                self._references.clear()
            found = self._references[digest] = events.references(payload)
        return found

    def __post_init__(self) -> None:
        self.source_fields = self.source.fields
        self._failing_since = 0.0

    def facts(self, context: RequestContext) -> str:
        """events.request_facts, with the client's part remembered for its next requests."""
        client = self._clients.get(context.client)
        if client is None:
            if len(self._clients) >= MAX_CLIENTS:
                self._clients.clear()
            client = self._clients[context.client] = events.client_facts(context.client)
        return events.request_facts(context, client)

    def write(self, lines: list[str]) -> Awaitable[None] | None:
        """Appends to the spool: None when done, else an awaitable to wait on before the
        request is answered. A spool that cannot take them (a full disk, Redis away) loses
        the events, not the request: what happened in storage stands, and the log says so
        (once a minute at most)."""
        try:
            pending = self.append(lines)
        except Exception as exc:
            self._lost(exc)
            return None
        return None if pending is None else self._waited(pending)

    def write_one(self, line: str) -> Awaitable[None] | None:
        """write([line]), without the list where the spool has `put`: the usual request
        makes one event."""
        put = self.put
        if put is None:
            return self.write([line])
        try:
            put(line)
        except Exception as exc:
            self._lost(exc)
        return None

    async def _waited(self, pending: Awaitable[None]) -> None:
        try:
            await pending
        except Exception as exc:
            self._lost(exc)

    def _lost(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._failing_since > 60:
            self._failing_since = now
            log.error("notifications: events lost, the spool cannot take them: %s", exc)

    def wrap(
        self, repository: RepositoryService, context: Callable[[], RequestContext]
    ) -> RepositoryService:
        return NotifyingRepository(repository, self, context)


class NotifyingRepository:
    """One request's view of a repository: its services with events around them, and the
    events the request makes in it."""

    __slots__ = ("_facts", "_repository", "context", "recorder", "repository")

    def __init__(
        self,
        repository: RepositoryService,
        recorder: Recorder,
        context: Callable[[], RequestContext],
    ) -> None:
        self._repository = repository
        self.recorder = recorder
        self.context = context  # made on first use: a request may record nothing
        self.repository = repository.name
        self._facts = ""

    def line(
        self,
        action: str,
        media_type: str = "",
        digest: str = "",
        size: int = 0,
        tag: str = "",
        from_repository: str = "",
        references: str = "",
    ) -> str:
        recorder = self.recorder
        facts = self._facts
        if not facts:
            facts = self._facts = recorder.facts(self.context())
        return events.record(
            recorder.ids.next(), recorder.clock.now(), recorder.source_fields, facts, action,
            self.repository, media_type, digest, size, tag, from_repository, references,
        )  # fmt: skip

    # Each of these records an event (or none, when no endpoint wants it) and returns what
    # Recorder.write does: None, or what to wait on before the request is answered.

    def blob(
        self, action: str, info: BlobInfo, from_repository: str = ""
    ) -> Awaitable[None] | None:
        if not self.recorder.wants(action, events.BLOB_MEDIA_TYPE):
            return None
        media_type = events.BLOB_MEDIA_TYPE
        line = self.line(action, media_type, str(info.digest), info.size, "", from_repository)
        return self.recorder.write_one(line)

    def manifest(
        self,
        action: str,
        media_type: str,
        digest: Digest,
        payload: bytes,
        tags: tuple[str, ...] | list[str],
    ) -> Awaitable[None] | None:
        if not self.recorder.wants(action, media_type):
            return None
        references = self.recorder.references(digest, payload)
        text, size = str(digest), len(payload)
        if len(tags) <= 1:
            tag = tags[0] if tags else ""
            return self.recorder.write_one(
                self.line(action, media_type, text, size, tag, "", references)
            )
        lines = [self.line(action, media_type, text, size, tag, "", references) for tag in tags]
        return self.recorder.write(lines)

    def deleted(self, digest: Digest | None, tags: list[str]) -> Awaitable[None] | None:
        if not self.recorder.wants(events.DELETE):
            return None
        lines = [self.line(events.DELETE, digest=str(digest))] if digest is not None else []
        lines += [self.line(events.DELETE, tag=tag) for tag in tags]
        return self.recorder.write(lines) if lines else None

    @property
    def name(self) -> str:
        return self._repository.name

    @property
    def tags(self) -> TagService:
        return self._repository.tags

    @property
    def blobs(self) -> BlobService:
        return NotifyingBlobs(self._repository.blobs, self)

    @property
    def uploads(self) -> UploadService:
        return NotifyingUploads(self._repository.uploads, self)

    @property
    def manifests(self) -> ManifestService:
        # made at each use, not kept: kept, it would make a reference cycle that holds the
        # request until the garbage collector runs (which then ran often, a fifth of a GET)
        return NotifyingManifests(self._repository.manifests, self)

    def exists(self) -> Awaitable[bool]:
        return self._repository.exists()


class NotifyingBlobs:
    __slots__ = ("_blobs", "_emitter")

    def __init__(self, blobs: BlobService, emitter: NotifyingRepository) -> None:
        self._blobs = blobs
        self._emitter = emitter

    async def open(self, digest: Digest, *, content: bool = True) -> BlobInfo | Arriving:
        opened = await self._blobs.open(digest, content=content)
        info = opened if isinstance(opened, BlobInfo) else opened.info
        pending = self._emitter.blob(events.PULL, info)
        if pending is not None:
            await pending
        return opened

    async def delete(self, digest: Digest) -> None:
        await self._blobs.delete(digest)
        pending = self._emitter.deleted(digest, [])
        if pending is not None:
            await pending

    async def mount(self, digest: Digest, source: RepositoryBlobs | None) -> BlobInfo | None:
        info = await self._blobs.mount(digest, source)
        if info is not None:
            pending = self._emitter.blob(events.MOUNT, info, source.name if source else "")
            if pending is not None:
                await pending
        return info

    def forget(self, digest: Digest) -> Awaitable[None]:
        return self._blobs.forget(digest)


class NotifyingUploads:
    __slots__ = ("_emitter", "_uploads")

    def __init__(self, uploads: UploadService, emitter: NotifyingRepository) -> None:
        self._uploads = uploads
        self._emitter = emitter

    def start(self, algorithm: str = DEFAULT_ALGORITHM) -> Awaitable[str]:
        return self._uploads.start(algorithm)

    def size(self, upload_id: str) -> Awaitable[int]:
        return self._uploads.size(upload_id)

    def append(
        self,
        upload_id: str,
        body: AsyncIterator[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> Awaitable[int]:
        return self._uploads.append(upload_id, body, start=start, length=length)

    async def upload(self, digest: Digest, body: AsyncIterator[bytes]) -> BlobInfo:
        info = await self._uploads.upload(digest, body)
        pending = self._emitter.blob(events.PUSH, info)
        if pending is not None:
            await pending
        return info

    async def commit(
        self, upload_id: str, digest: Digest, body: AsyncIterator[bytes] | None = None
    ) -> BlobInfo:
        info = await self._uploads.commit(upload_id, digest, body)
        pending = self._emitter.blob(events.PUSH, info)
        if pending is not None:
            await pending
        return info

    def cancel(self, upload_id: str) -> Awaitable[None]:
        return self._uploads.cancel(upload_id)


class NotifyingManifests:
    __slots__ = ("_emitter", "_manifests")

    def __init__(self, manifests: ManifestService, emitter: NotifyingRepository) -> None:
        self._manifests = manifests
        self._emitter = emitter

    def resolve(self, reference: str) -> Awaitable[Digest]:
        return self._manifests.resolve(reference)

    async def get(self, reference: str, resolved: Digest | None = None) -> StoredManifest:
        stored = await self._manifests.get(reference, resolved)
        tags = [reference] if ":" not in reference else []  # a digest has a colon, a tag none
        pending = self._emitter.manifest(
            events.PULL, stored.media_type, stored.digest, stored.payload, tags
        )
        if pending is not None:
            await pending
        return stored

    async def put(
        self, reference: str, payload: bytes, content_type: str | None, extra_tags: list[str]
    ) -> PutResult:
        result = await self._manifests.put(reference, payload, content_type, extra_tags)
        pending = self._emitter.manifest(
            events.PUSH, result.manifest.media_type, result.digest, payload, result.tags
        )
        if pending is not None:
            await pending
        return result

    async def delete(self, reference: str) -> list[str]:
        tags = await self._manifests.delete(reference)
        digest = Digest.parse(reference) if ":" in reference else None
        pending = self._emitter.deleted(digest, tags)
        if pending is not None:
            await pending
        return tags

    def referrer_descriptors(
        self, subject: Digest, artifact_type: str | None
    ) -> Awaitable[list[schema.Descriptor]]:
        return self._manifests.referrer_descriptors(subject, artifact_type)
