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
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from moorage.notifications import events
from moorage.registry import manifests as schema
from moorage.registry.blobs import Arriving, BlobInfo, RepositoryBlobs
from moorage.registry.context import RequestContext
from moorage.registry.digest import DEFAULT_ALGORITHM, Digest
from moorage.registry.manifest_store import PutResult, StoredManifest
from moorage.registry.repository import (
    BlobService,
    ManifestService,
    RepositoryService,
    UploadService,
)

log = logging.getLogger("moorage.notifications")
Key = TypeVar("Key")

MAX_TARGETS = 4096  # targets (what happened to what) whose part of the records is kept


@dataclass(frozen=True)
class Filter:
    """What one endpoint does not want: actions, and target media types."""

    actions: frozenset[str] = frozenset()
    media_types: frozenset[str] = frozenset()

    def wants(self, action: str, media_type: str) -> bool:
        return action not in self.actions and media_type not in self.media_types


@dataclass(slots=True)
class Recorder:
    """The request path's half of notifications: makes the records of what happened and
    appends them, in one write per request, to the spool. Events no endpoint wants are never
    made. `append` writes to the spool: it returns None when the records are there already
    (a file spool), else an awaitable done when they are (Redis).

    A record is made of parts that repeat (what happened to what; who the client is), kept
    once made: a pull of a tag makes the same target each time, a keep-alive connection's
    requests the same client (events.Records). Only the event's time and the request's id
    are new."""

    append: Callable[[list[str]], Awaitable[None] | None]
    filters: list[Filter]
    include_references: bool
    records: events.Records
    # writes one event's record (its target, and the request's context), there when it
    # returns: a file spool's (spool.InboxWriter.record)
    put: Callable[[str, RequestContext], None] | None = None
    _wanted: dict[tuple[str, str], bool] = field(default_factory=dict)
    # what an event's target follows from -> the target, or "" when no endpoint wants it:
    # (action, repository, media type, digest's algorithm and hex, tag) for manifests (a
    # Digest's own hash is a Python call), (action, repository, digest, size, source
    # repository) for blobs
    _manifests: dict[tuple[str, str, str, str, str, str], str] = field(default_factory=dict)
    _blobs: dict[tuple[str, str, Digest, int, str], str] = field(default_factory=dict)
    _failing_since: float = 0.0  # when the spool last failed to take events (monotonic)

    def wants(self, action: str, media_type: str = "") -> bool:
        key = (action, media_type)
        found = self._wanted.get(key)
        if found is None:
            if len(self._wanted) > 1024:  # media types come from manifests: keep it bounded
                self._wanted.clear()
            found = self._wanted[key] = any(f.wants(action, media_type) for f in self.filters)
        return found

    def manifest_target(
        self, action: str, repository: str, media_type: str, digest: Digest, tag: str,
        payload: bytes,
    ) -> str:  # fmt: skip
        """events.target of a manifest's event; "" when no endpoint wants it. The payload
        is the one `digest` names: its size and references follow from the digest."""
        key = (action, repository, media_type, digest.algorithm, digest.hex, tag)
        found = self._manifests.get(key)
        if found is None:
            found = ""
            if self.wants(action, media_type):
                references = events.references(payload) if self.include_references else ""
                found = events.target(
                    action, repository, media_type, str(digest), len(payload), tag, "",
                    references,
                )  # fmt: skip
            _keep(self._manifests, key, found)
        return found

    def blob_target(
        self, action: str, repository: str, info: BlobInfo, from_repository: str
    ) -> str:
        """events.target of a blob's event; "" when no endpoint wants it."""
        key = (action, repository, info.digest, info.size, from_repository)
        found = self._blobs.get(key)
        if found is None:
            found = ""
            if self.wants(action, events.BLOB_MEDIA_TYPE):
                found = events.target(
                    action, repository, events.BLOB_MEDIA_TYPE, str(info.digest), info.size,
                    "", from_repository,
                )  # fmt: skip
            _keep(self._blobs, key, found)
        return found

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

    def record(self, target: str, context: RequestContext) -> Awaitable[None] | None:
        """Writes the record of one event (`target`, by the request `context` tells) as
        write() does, without the list where the spool has `put`: the usual request makes
        one event."""
        put = self.put
        if put is None:
            return self.write([self.records.make(target, context)])
        try:
            put(target, context)
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
        """The repository with events around its services (api.context.RepositoryWrapper);
        `context` tells the facts of the request being served. The wrapper keeps no request's
        state: it serves any number of requests."""
        return NotifyingRepository(repository, RepositoryEvents(self, context, repository.name))


def _keep(kept: dict[Key, str], key: Key, target: str) -> None:
    if len(kept) >= MAX_TARGETS:  # names and tags come from clients: keep it bounded
        kept.clear()
    kept[key] = target


class RepositoryEvents:
    """The events made in one repository: each records an event (or none, when no endpoint
    wants it) of the request being served and returns what Recorder.write does: None, or
    what to wait on before the request is answered."""

    __slots__ = ("_pulled", "context", "recorder", "repository")

    def __init__(
        self, recorder: Recorder, context: Callable[[], RequestContext], repository: str
    ) -> None:
        self.recorder = recorder
        self.context = context
        self.repository = repository
        # the last pull's digest (the object: a tag's is kept by the tag store, the same
        # object while the tag does not move), reference and target
        self._pulled: tuple[Digest | None, str, str] = (None, "", "")

    def pulled(self, stored: StoredManifest, reference: str) -> Awaitable[None] | None:
        """A pull of `stored` by `reference` (a tag or a digest). The usual request: a pull
        of the same tag as the last one, whose target is known without a lookup."""
        digest = stored.digest
        last = self._pulled
        if last[0] is digest and last[1] == reference:
            target = last[2]
        else:
            target = self.recorder.manifest_target(
                events.PULL, self.repository, stored.media_type, digest,
                "" if ":" in reference else reference,  # a digest has a colon, a tag none
                stored.payload,
            )  # fmt: skip
            self._pulled = (digest, reference, target)
        if not target:
            return None
        return self.recorder.record(target, self.context())

    def blob(
        self, action: str, info: BlobInfo, from_repository: str = ""
    ) -> Awaitable[None] | None:
        recorder = self.recorder
        target = recorder.blob_target(action, self.repository, info, from_repository)
        if not target:
            return None
        return recorder.record(target, self.context())

    def manifest(
        self, action: str, media_type: str, digest: Digest, payload: bytes, tag: str = ""
    ) -> Awaitable[None] | None:
        """One event: a push by tag or by digest (a pull is pulled())."""
        recorder = self.recorder
        target = recorder.manifest_target(action, self.repository, media_type, digest, tag, payload)
        if not target:
            return None
        return recorder.record(target, self.context())

    def tagged(
        self, action: str, media_type: str, digest: Digest, payload: bytes, tags: Sequence[str]
    ) -> Awaitable[None] | None:
        """One event per tag, or one without a tag when there is none."""
        if len(tags) <= 1:
            return self.manifest(action, media_type, digest, payload, tags[0] if tags else "")
        recorder = self.recorder
        targets = [
            recorder.manifest_target(action, self.repository, media_type, digest, tag, payload)
            for tag in tags
        ]
        return self._write([target for target in targets if target])

    def deleted(self, digest: Digest | None, tags: list[str]) -> Awaitable[None] | None:
        if not self.recorder.wants(events.DELETE):
            return None
        targets = [events.target(events.DELETE, self.repository, tag=tag) for tag in tags]
        if digest is not None:  # the digest's delete first, then its tags'
            targets.insert(0, events.target(events.DELETE, self.repository, digest=str(digest)))
        return self._write(targets)

    def _write(self, targets: list[str]) -> Awaitable[None] | None:
        if not targets:
            return None
        recorder = self.recorder
        context = self.context()
        return recorder.write([recorder.records.make(target, context) for target in targets])


class NotifyingRepository:
    """A repository's services with its events around them. Made once per repository: the
    services are attributes (a handler's use of them is a plain lookup, no call), and
    they refer to the events, not back to this (a cycle would wait for the garbage
    collector)."""

    __slots__ = ("blobs", "events", "exists", "inner", "manifests", "name", "tags", "uploads")

    def __init__(self, repository: RepositoryService, repository_events: RepositoryEvents) -> None:
        self.inner = repository
        self.events = repository_events
        self.name = repository.name
        self.tags = repository.tags
        self.blobs = NotifyingBlobs(repository.blobs, repository_events)
        self.uploads = NotifyingUploads(repository.uploads, repository_events)
        self.manifests = NotifyingManifests(repository.manifests, repository_events)
        self.exists = repository.exists


class NotifyingBlobs:
    __slots__ = ("_blobs", "_emitter")

    def __init__(self, blobs: BlobService, emitter: RepositoryEvents) -> None:
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

    def __init__(self, uploads: UploadService, emitter: RepositoryEvents) -> None:
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
    __slots__ = ("_emitter", "_manifests", "referrer_descriptors", "resolve")

    def __init__(self, manifests: ManifestService, emitter: RepositoryEvents) -> None:
        self._manifests = manifests
        self._emitter = emitter
        # what makes no event is the service's own (no call in between)
        self.resolve: Callable[[str], Awaitable[Digest]] = manifests.resolve
        self.referrer_descriptors: Callable[
            [Digest, str | None], Awaitable[list[schema.Descriptor]]
        ] = manifests.referrer_descriptors

    async def get(self, reference: str, resolved: Digest | None = None) -> StoredManifest:
        stored = await self._manifests.get(reference, resolved)
        pending = self._emitter.pulled(stored, reference)
        if pending is not None:
            await pending
        return stored

    async def put(
        self, reference: str, payload: bytes, content_type: str | None, extra_tags: list[str]
    ) -> PutResult:
        result = await self._manifests.put(reference, payload, content_type, extra_tags)
        pending = self._emitter.tagged(
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
