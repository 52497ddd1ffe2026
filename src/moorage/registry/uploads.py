"""Blob upload sessions, kept in storage (`_uploads/<id>/`) so they outlive the process.

The digest is computed as bytes arrive. After each chunk the running hash's state is saved with
the session (`hashstates/<algorithm>/<offset>`, in distribution's encoding: registry/hashstate.py),
so that the next request continues it without reading the stored bytes again, in any worker or
replica, or in distribution on the same storage; the process that hashed a chunk also keeps the
hash in memory. A state is used only when its offset is the stored data's size. The digest is
re-derived from the stored bytes when no running hash covers exactly those bytes (nothing saved at
that offset), when the client finally names another algorithm than the session's, and before a
digest that a restored hash disagrees with is refused: a wrong state costs a re-read, never a
wrong digest. Each re-read is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass

from moorage.registry import hashstate
from moorage.registry.blobs import (
    CLAIM_ATTEMPTS,
    BlobInfo,
    BlobStore,
    RepositoryBlobs,
    content_hex,
)
from moorage.registry.digest import ALGORITHMS, DEFAULT_ALGORITHM, Digest, Hasher
from moorage.registry.errors import (
    BlobUploadInvalid,
    BlobUploadUnknown,
    DigestInvalid,
    QuotaExceeded,
    RangeInvalid,
    Unavailable,
)
from moorage.registry.space import needs_space
from moorage.storage import paths
from moorage.storage.driver import FileWriter, PathNotFound, StorageDriver, StorageError

log = logging.getLogger("moorage")

_UPLOAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")


@dataclass
class RunningHash:
    algorithm: str
    hasher: Hasher
    offset: int  # bytes hashed: valid only while it equals the stored data's size
    restored: bool = False  # continued from a state another process saved
    # the hashing of a body's last group, which may still run when the body is stored; awaited
    # (under the session's lock) before the hash is used or saved
    pending: asyncio.Future[None] | None = None

    async def settle(self) -> None:
        pending, self.pending = self.pending, None
        if pending is not None:
            await pending

    def covers(self, size: int, algorithm: str) -> bool:
        """Whether this is the digest in `algorithm` of `size` stored bytes (once settled)."""
        return self.offset == size and self.algorithm == algorithm


class HashStates:
    """The running digests this process computed or restored, and the per-session locks, of
    its upload sessions."""

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
    gather into groups of BUFFER bytes; each group is hashed in the thread (libcrypto releases
    the GIL) while the loop writes it and receives the next, one group hashed at a time. The
    last group's hash may still run when the body is stored (`RunningHash.pending`). Memory
    stays at a few groups whatever the body's size."""

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

    @needs_space
    async def start(self, algorithm: str = DEFAULT_ALGORITHM, *, chunked: bool = True) -> str:
        """Creates a session and returns its id. A `chunked` session in another algorithm than
        the default saves its empty state, so that other processes know the algorithm; a
        monolithic one (`chunked=False`) is committed by the same request."""
        running = RunningHash(algorithm, hashstate.new(algorithm), 0)
        upload_id = str(uuid.uuid4())
        started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        await self.driver.put_content(
            paths.upload_started_at(self.name, upload_id), started.encode()
        )
        writer = await self.driver.writer(paths.upload_data(self.name, upload_id), append=True)
        await writer.commit()
        self.states.hashes[(self.name, upload_id)] = running
        if chunked and algorithm != DEFAULT_ALGORITHM:
            await self._save(upload_id, running)
        return upload_id

    async def size(self, upload_id: str) -> int:
        """Bytes received so far; BlobUploadUnknown if there is no such session."""
        return await self._data_size(upload_id) or 0

    async def _data_size(self, upload_id: str) -> int | None:
        """The size of the session's data; None when it has no data file (none written yet, or
        no more); BlobUploadUnknown if there is no such session."""
        self._check_id(upload_id)
        try:
            return (await self.driver.stat(paths.upload_data(self.name, upload_id))).size
        except PathNotFound:
            pass
        try:
            await self.driver.stat(paths.upload_started_at(self.name, upload_id))
        except PathNotFound:
            raise BlobUploadUnknown(detail={"uuid": upload_id}) from None
        return None

    @needs_space
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
        failure stay in the session, and the size reported afterwards counts them. The running
        hash's state is saved before this returns."""
        async with self.states.lock((self.name, upload_id)):
            size, running = await self._append(upload_id, body, start, length)
            if running is not None:
                await running.settle()
                if running.offset == size:
                    await self._save(upload_id, running)
            return size

    async def _append(
        self, upload_id: str, body: AsyncIterator[bytes], start: int | None, length: int | None
    ) -> tuple[int, RunningHash | None]:
        """The new size, and the running hash that hashed the chunk (None: nothing covered the
        bytes stored before it)."""
        size = await self.size(upload_id)
        if start is not None and start != size:
            raise RangeInvalid(f"chunk starts at {start}, the upload holds {size} bytes", size=size)
        running = await self._running(upload_id, size)
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
        return writer.size, running

    async def upload(self, digest: Digest, body: AsyncIterator[bytes]) -> BlobInfo:
        """A whole blob in one request (a monolithic upload): its session lasts as long as the
        request, and is gone after it, the blob committed or not."""
        upload_id = await self.start(digest.algorithm, chunked=False)
        try:
            return await self.commit(upload_id, digest, body)
        except BaseException:
            with contextlib.suppress(StorageError):
                await self._discard(upload_id)
            raise

    @needs_space
    async def commit(
        self, upload_id: str, digest: Digest, body: AsyncIterator[bytes] | None = None
    ) -> BlobInfo:
        """Appends the final chunk if any, verifies the digest and links the blob into the
        repository. On a digest mismatch the session is discarded and nothing is committed."""
        async with self.states.lock((self.name, upload_id)):
            if body:
                size, running = await self._append(upload_id, body, None, None)
            else:
                kept = await self._data_size(upload_id)
                if kept is None:
                    # No data: an earlier commit moved it into the store and was cut short (a
                    # crash) before it ended the session, which is spent.
                    await self._discard(upload_id)
                    raise BlobUploadUnknown(detail={"uuid": upload_id})
                size, running = kept, await self._running(upload_id, kept)
            data = paths.upload_data(self.name, upload_id)
            actual = await self._hex(upload_id, running, size, digest.algorithm)
            if (
                actual != digest.hex
                and running is not None
                and running.restored
                and running.covers(size, digest.algorithm)
            ):
                why = "the hash restored from a saved state disagrees with the client's digest"
                actual = await self._rehash(upload_id, digest.algorithm, why)
            if actual != digest.hex:
                await self._discard(upload_id)
                raise DigestInvalid(
                    detail={"digest": str(digest), "actual": f"{digest.algorithm}:{actual}"}
                )
            # Stored under its sha256 and linked under both digests, as distribution does.
            stored = digest
            if digest.algorithm != paths.CONTENT_ALGORITHM:
                algorithm = paths.CONTENT_ALGORITHM
                stored = Digest(algorithm, await self._hex(upload_id, running, size, algorithm))
            try:
                async with self.blobs.admitted(stored, size):
                    try:
                        await self._store(data, digest, stored)
                    finally:
                        await self._discard(upload_id)  # its data is in the store: spent
            except QuotaExceeded:
                await self._discard(upload_id)  # refused: nothing of it is kept
                raise
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

    async def _running(self, upload_id: str, size: int) -> RunningHash | None:
        """The running hash of the session's `size` stored bytes: this process's, else the state
        saved with the session at that offset; None when neither covers exactly those bytes."""
        key = (self.name, upload_id)
        running = self.states.hashes.get(key)
        if running is not None:
            await running.settle()
            if running.offset == size:
                return running
            del self.states.hashes[key]
        running = await self._restore(upload_id, size)
        if running is not None:
            self.states.hashes[key] = running
        return running

    async def _restore(self, upload_id: str, size: int) -> RunningHash | None:
        # At offset 0 only the algorithm is unknown: a state is saved for all but the default.
        for algorithm in sorted(ALGORITHMS, key=lambda name: name != DEFAULT_ALGORITHM):
            if size == 0 and algorithm == DEFAULT_ALGORITHM:
                continue
            path = paths.upload_hash_state(self.name, upload_id, algorithm, size)
            try:
                state = await self.driver.get_content(path)
            except PathNotFound:
                continue
            hasher = hashstate.restore(algorithm, state)
            if hasher is not None and hasher.length == size:
                return RunningHash(algorithm, hasher, size, restored=True)
            log.warning("upload %s: %s is not a valid hash state: ignored", upload_id, path)
        if size == 0:
            return RunningHash(DEFAULT_ALGORITHM, hashstate.new(DEFAULT_ALGORITHM), 0)
        return None

    async def _save(self, upload_id: str, running: RunningHash) -> None:
        """Saves the running hash's state at its offset, for whichever process continues the
        session. A failure only costs that process a re-read, so it is logged, not raised."""
        state = hashstate.marshal(running.hasher)
        if state is None:
            return
        path = paths.upload_hash_state(self.name, upload_id, running.algorithm, running.offset)
        try:
            await self.driver.put_content(path, state)
        except StorageError as exc:
            log.warning("upload %s: the hash state was not saved: %s", upload_id, exc)

    async def _hex(
        self, upload_id: str, running: RunningHash | None, size: int, algorithm: str
    ) -> str:
        """The hex digest of the session's `size` stored bytes: from the running hash when it
        covers them in that algorithm, else read back from storage."""
        if running is None:
            return await self._rehash(upload_id, algorithm, "no running hash covers them")
        await running.settle()
        if not running.covers(size, algorithm):
            return await self._rehash(upload_id, algorithm, f"hashed as {running.algorithm}")
        return running.hasher.hexdigest()

    async def _rehash(self, upload_id: str, algorithm: str, why: str) -> str:
        """The digest of the session's stored bytes, read back (logged: it takes about a
        second per GB)."""
        log.info(
            "upload %s: reading the stored bytes back for their %s (%s)", upload_id, algorithm, why
        )
        return await content_hex(self.driver, paths.upload_data(self.name, upload_id), algorithm)

    async def _discard(self, upload_id: str) -> None:
        self.states.hashes.pop((self.name, upload_id), None)
        with contextlib.suppress(PathNotFound):
            await self.driver.delete(paths.upload_dir(self.name, upload_id))

    @staticmethod
    def _check_id(upload_id: str) -> None:
        if not _UPLOAD_ID.fullmatch(upload_id):
            raise BlobUploadUnknown(detail={"uuid": upload_id})
