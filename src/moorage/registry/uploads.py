"""Blob upload sessions, kept in storage (`_uploads/<id>/`) so they outlive the process.

The digest is computed as bytes arrive. That running state lives in this process only; when it is
missing (a restart, another replica, a session started by distribution) or was computed with
another algorithm than the one the client finally names, the digest is re-derived from the
stored bytes at commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass

from moorage.registry.blobs import (
    CLAIM_ATTEMPTS,
    BlobInfo,
    BlobStore,
    RepositoryBlobs,
    content_hex,
)
from moorage.registry.digest import DEFAULT_ALGORITHM, Digest, Hasher, new_hasher
from moorage.registry.errors import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    RangeInvalid,
    Unavailable,
)
from moorage.storage import paths
from moorage.storage.driver import FileWriter, PathNotFound, StorageDriver

_UPLOAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


@dataclass
class RunningHash:
    algorithm: str
    hasher: Hasher
    offset: int  # bytes hashed: valid only while it equals the stored data's size
    # the hashing of a request's last bytes, still running after its answer; awaited before
    # the session's next use (under the session's lock)
    pending: asyncio.Future[None] | None = None

    async def settle(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            await pending


class HashStates:
    """The running digests and the per-session locks of this process's upload sessions."""

    def __init__(self) -> None:
        self.hashes: dict[tuple[str, str], RunningHash] = {}
        self._locks: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )

    def lock(self, key: tuple[str, str]) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock


class Pipeline:
    """Hashes a body on a worker thread while the event loop receives and writes it: chunks
    gather into groups of BUFFER bytes; each group is hashed in the thread (hashlib releases
    the GIL) while the loop writes it and receives the next, one group hashed at a time. The
    last group's hash may still run when the request is answered (`RunningHash.pending`).
    Memory stays at a few groups whatever the body's size."""

    BUFFER = 1 << 20

    def __init__(self, writer: FileWriter, running: RunningHash | None) -> None:
        self.writer = writer
        self.running = running
        self._chunks: list[bytes] = []
        self._buffered = 0

    async def feed(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered >= self.BUFFER:
            await self._flush()

    async def drain(self) -> None:
        """Writes what is buffered; the hashing of it may go on after."""
        if self._chunks:
            await self._flush()

    async def _flush(self) -> None:
        chunks, self._chunks, self._buffered = self._chunks, [], 0
        if self.running is not None:
            await self.running.settle()  # hashes stay in order: one group at a time
            loop = asyncio.get_running_loop()
            self.running.pending = loop.run_in_executor(None, self._hash, self.running, chunks)
        for chunk in chunks:
            await self.writer.write(chunk)

    @staticmethod
    def _hash(running: RunningHash, chunks: list[bytes]) -> None:
        for chunk in chunks:
            running.hasher.update(chunk)
            running.offset += len(chunk)


class Uploads:
    """The upload sessions of one repository."""

    def __init__(
        self,
        driver: StorageDriver,
        store: BlobStore,
        blobs: RepositoryBlobs,
        name: str,
        states: HashStates,
    ) -> None:
        self.driver = driver
        self.store = store
        self.blobs = blobs
        self.name = name
        self.states = states

    async def start(self, algorithm: str = DEFAULT_ALGORITHM) -> str:
        """Creates a session and returns its id."""
        hasher = new_hasher(algorithm)
        upload_id = str(uuid.uuid4())
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        await self.driver.put_content(
            paths.upload_started_at(self.name, upload_id), started.encode()
        )
        writer = await self.driver.writer(paths.upload_data(self.name, upload_id), append=True)
        await writer.commit()
        self.states.hashes[(self.name, upload_id)] = RunningHash(algorithm, hasher, 0)
        return upload_id

    async def size(self, upload_id: str) -> int:
        """Bytes received so far; BlobUploadUnknown if there is no such session."""
        self._check_id(upload_id)
        try:
            return (await self.driver.stat(paths.upload_data(self.name, upload_id))).size
        except PathNotFound:
            pass
        try:
            await self.driver.stat(paths.upload_started_at(self.name, upload_id))
        except PathNotFound:
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
        return 0

    async def append(
        self,
        upload_id: str,
        body: AsyncIterator[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> int:
        """Appends a chunk and returns the new size. With `start`, the chunk must begin where
        the session ends (RangeInvalid otherwise, before anything is read); with `length`, the
        body must be exactly that long (BlobUploadInvalid otherwise). Bytes received before a
        failure stay in the session, and the size reported afterwards counts them."""
        async with self.states.lock((self.name, upload_id)):
            return await self._append(upload_id, body, start, length)

    async def _append(
        self, upload_id: str, body: AsyncIterator[bytes], start: int | None, length: int | None
    ) -> int:
        size = await self.size(upload_id)
        if start is not None and start != size:
            raise RangeInvalid(f"chunk starts at {start}, the upload holds {size} bytes", size=size)
        key = (self.name, upload_id)
        running = self.states.hashes.get(key)
        if running is not None:
            await running.settle()
        if running is not None and running.offset != size:
            running = None
            del self.states.hashes[key]
        if running is None and size == 0:
            running = self.states.hashes[key] = RunningHash(
                DEFAULT_ALGORITHM, new_hasher(DEFAULT_ALGORITHM), 0
            )
        writer = await self.driver.writer(paths.upload_data(self.name, upload_id), append=True)
        pipeline = Pipeline(writer, running)
        received = 0
        try:
            async for chunk in body:
                if length is not None and received + len(chunk) > length:
                    raise BlobUploadInvalid(f"body longer than the {length} bytes declared")
                await pipeline.feed(chunk)
                received += len(chunk)
        finally:
            try:
                await pipeline.drain()
            finally:
                await writer.commit()
        if length is not None and received != length:
            raise BlobUploadInvalid(f"body of {received} bytes, {length} declared")
        return writer.size

    async def commit(
        self, upload_id: str, digest: Digest, body: AsyncIterator[bytes] | None = None
    ) -> BlobInfo:
        """Appends the final chunk if any, verifies the digest and links the blob into the
        repository. On a digest mismatch the session is discarded and nothing is committed."""
        key = (self.name, upload_id)
        async with self.states.lock(key):
            size = (
                await self._append(upload_id, body, None, None)
                if body
                else await self.size(upload_id)
            )
            data = paths.upload_data(self.name, upload_id)
            actual = await self._hex(key, data, size, digest.algorithm)
            if actual != digest.hex:
                await self._discard(upload_id)
                raise DigestInvalid(
                    detail={"digest": str(digest), "actual": f"{digest.algorithm}:{actual}"}
                )
            # Stored under its sha256 and linked under both digests, as distribution does.
            stored = digest
            if digest.algorithm != paths.CONTENT_ALGORITHM:
                algorithm = paths.CONTENT_ALGORITHM
                stored = Digest(algorithm, await self._hex(key, data, size, algorithm))
            await self._store(data, digest, stored)
            await self._discard(upload_id)
            return BlobInfo(digest, size, stored)

    async def _store(self, data: str, digest: Digest, stored: Digest) -> None:
        """Moves the session's bytes into place unless the content is stored already, links them
        (under both digests for a sha512 blob) and claims them; again when a garbage collection
        deleted the content or a link meanwhile (the bytes are still in the session then)."""
        named = {stored, digest}
        for _ in range(CLAIM_ATTEMPTS):
            await self.store.ingest(data, stored)
            for linked in named:
                await self.blobs.link(linked, stored)
            if not await self.store.claim([stored]) and all(
                [await self.blobs.has_link(linked, stored) for linked in named]
            ):
                return
        raise Unavailable("a garbage collection kept deleting this blob as it was stored; retry")

    async def cancel(self, upload_id: str) -> None:
        async with self.states.lock((self.name, upload_id)):
            await self.size(upload_id)
            await self._discard(upload_id)

    async def _hex(self, key: tuple[str, str], path: str, size: int, algorithm: str) -> str:
        """The hex digest of the session's `size` stored bytes: from the running hash when it
        covers them in that algorithm, else read back from storage."""
        running = self.states.hashes.get(key)
        if running is not None:
            await running.settle()
        if running and running.offset == size and running.algorithm == algorithm:
            return running.hasher.hexdigest()
        return await content_hex(self.driver, path, algorithm)

    async def _discard(self, upload_id: str) -> None:
        self.states.hashes.pop((self.name, upload_id), None)
        with contextlib.suppress(PathNotFound):
            await self.driver.delete(paths.upload_dir(self.name, upload_id))

    @staticmethod
    def _check_id(upload_id: str) -> None:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise BlobUploadUnknown(detail={"uuid": upload_id})
