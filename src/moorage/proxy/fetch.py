"""Blobs fetched from an upstream: each fetched once per process however many clients ask for it
at the same time, streamed to all of them while it is written to storage.

A fetch spools the upstream's bytes to an anonymous temporary file as they arrive (the system's
temporary directory, `$TMPDIR`), so that every client reads from any offset at its own pace: a
slow or departed client holds back neither the others nor the store. Bytes go to the store
through the driver's writer as they arrive, and the digest is computed as they do; the writer
commits only when the whole blob matches its digest. A client gets every byte but the last one
as soon as it is spooled, and the last once the blob is verified and kept (linked into its
repository): no client ever receives a whole body that does not match its digest, and a client
that has the whole blob finds it cached on its next request, in any process. When the upstream
fails midway, or sends other bytes than the digest names, every client's answer is cut short and
nothing is stored.

Memory stays at a few groups of GROUP bytes per fetch, whatever the blob's size. Across worker
processes and replicas nothing is shared: at worst each process fetches a blob once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable
from dataclasses import dataclass

import aiohttp

from moorage.registry.blobs import BlobInfo, BlobStore
from moorage.registry.digest import Digest, Hasher, new_hasher
from moorage.registry.errors import RegistryError, Unavailable
from moorage.storage import paths
from moorage.storage.driver import FileWriter, StorageError

log = logging.getLogger("moorage.proxy")

GROUP = 1 << 20  # bytes spooled, hashed and stored at a time (at least)...
GROUP_CHUNKS = 256  # ...or chunks, at most (one pwritev takes at most IOV_MAX buffers)
READ = 1 << 20  # bytes a client reads from the spool at a time
TRANSFER_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError)

Stored = Callable[[int], Awaitable[None]]  # links the stored blob (of that size) where it goes


@dataclass(frozen=True)
class Source:
    """The upstream's answer to the blob's GET, its body not read yet."""

    response: aiohttp.ClientResponse
    size: int
    upstream: str  # for messages


class Fetch:
    """One blob on its way from the upstream: readable from the spool while it arrives
    (moorage.registry.blobs.Arriving)."""

    def __init__(self, digest: Digest, size: int) -> None:
        self.info = BlobInfo(digest, size, digest)
        descriptor, spool = tempfile.mkstemp(prefix="moorage-fetch-")
        os.unlink(spool)  # anonymous: gone with the process, whatever happens to it
        self._fd = descriptor
        self._closer = weakref.finalize(self, os.close, descriptor)  # once nobody reads it
        # For sendfile (which reads at explicit offsets, as everything here does).
        self.file = os.fdopen(descriptor, "rb", buffering=0, closefd=False)
        self._spooled = 0
        self._verified = False
        self._failure: str | None = None
        self._progress = asyncio.Condition()

    async def ready(self, offset: int) -> int:
        """Waits until `file` holds bytes from `offset` on that may be sent, and returns where
        they end; `offset` itself only at the blob's end. Every byte but the last may be sent
        once spooled, the last once the blob is verified and kept. Raises Unavailable when the
        fetch fails."""
        size = self.info.size
        while True:
            readable = size if self._verified else min(self._spooled, size - 1)
            if offset < readable or self._verified:
                return max(readable, offset)
            if self._failure is not None:
                raise Unavailable(self._failure)
            await self._moved(self._spooled)

    async def chunks(self, offset: int) -> AsyncIterator[bytes]:
        position = offset
        while (end := await self.ready(position)) > position:
            while position < end:
                count = min(READ, end - position)
                data = await asyncio.to_thread(os.pread, self._fd, count, position)
                if not data:  # the spool holds what was counted: only a defect gets here
                    raise Unavailable("the fetched blob's spool ended early")
                position += len(data)
                yield data

    @property
    def failed(self) -> bool:
        return self._failure is not None

    async def _moved(self, seen: int) -> None:
        """Waits until more than `seen` bytes are spooled, or the fetch ends."""
        async with self._progress:
            await self._progress.wait_for(
                lambda: self._spooled > seen or self._verified or self._failure is not None
            )

    async def run(self, source: Source, store: BlobStore | None, stored: Stored) -> None:
        """Reads the upstream's body to the end, into the spool and (with a `store`) into
        storage; `stored(size)` runs once the blob is committed there."""
        digest, size = self.info.digest, self.info.size
        hasher = new_hasher(digest.algorithm)
        writer = await self._writer(store, source) if store is not None else None
        group: list[bytes] = []
        grouped = 0
        try:
            try:
                async for chunk in source.response.content.iter_any():
                    group.append(chunk)
                    grouped += len(chunk)
                    if self._spooled + grouped > size:
                        raise ValueError(f"more bytes than the {size} announced")
                    if grouped >= GROUP or len(group) >= GROUP_CHUNKS:
                        writer = await self._take(group, hasher, writer, source)
                        group, grouped = [], 0
                if group:
                    writer = await self._take(group, hasher, writer, source)
            except (*TRANSFER_ERRORS, ValueError) as exc:
                raise self._fail(
                    f"the upstream ({source.upstream}) failed after {self._spooled} of {size} "
                    f"bytes of {digest}: {exc or type(exc).__name__}"
                ) from None
            if self._spooled != size:
                raise self._fail(
                    f"the upstream ({source.upstream}) sent {self._spooled} of the {size} bytes "
                    f"of {digest}"
                )
            if hasher.hexdigest() != digest.hex:
                raise self._fail(
                    f"the upstream ({source.upstream}) sent content that does not match {digest}"
                )
            if writer is not None:
                await self._commit(writer, stored)
                writer = None
            await self._settle(verified=True)
        finally:
            if writer is not None:
                with contextlib.suppress(StorageError):
                    await writer.cancel()
            if not self._verified:
                self._failure = self._failure or "the fetch was stopped (the server is stopping)"
                await self._settle()

    async def _take(
        self, group: list[bytes], hasher: Hasher, writer: FileWriter | None, source: Source
    ) -> FileWriter | None:
        """Spools and hashes a group of chunks (on a worker thread: both release the GIL), then
        stores it; returns the writer, or None once storing has failed."""
        try:
            spooled = await asyncio.to_thread(self._spool, group, self._spooled, hasher)
        except OSError as exc:
            raise self._fail(
                f"spooling {self.info.digest} to the temporary directory failed: {exc.strerror}"
            ) from None
        self._spooled += spooled
        await self._settle()
        if writer is None:
            return None
        try:
            for chunk in group:
                await writer.write(chunk)
        except StorageError as exc:
            log.warning(
                "storing %s from %s failed (%s): clients get it, the cache does not keep it",
                self.info.digest, source.upstream, exc,
            )  # fmt: skip
            with contextlib.suppress(StorageError):
                await writer.cancel()
            return None
        return writer

    def _spool(self, group: list[bytes], position: int, hasher: Hasher) -> int:
        """Writes the chunks at `position` and hashes them; returns how many bytes."""
        size = sum(len(chunk) for chunk in group)
        written = os.pwritev(self._fd, group, position)
        if written < size:  # a short write (a signal): the rest, one buffer at a time
            rest = memoryview(b"".join(group))[written:]
            while rest:
                done = os.pwrite(self._fd, rest, position + written)
                rest, written = rest[done:], written + done
        for chunk in group:
            hasher.update(chunk)
        return size

    async def _writer(self, store: BlobStore, source: Source) -> FileWriter | None:
        try:
            return await store.writer(self.info.digest)
        except StorageError as exc:
            log.warning(
                "storing %s from %s failed (%s): clients get it, the cache does not keep it",
                self.info.digest, source.upstream, exc,
            )  # fmt: skip
            return None

    async def _commit(self, writer: FileWriter, stored: Stored) -> None:
        try:
            await writer.commit()
            await stored(self.info.size)
        except (StorageError, RegistryError) as exc:
            log.warning("keeping %s in the cache failed: %s", self.info.digest, exc)

    def _fail(self, message: str) -> Unavailable:
        """Records why the fetch failed; its readers raise it once woken (see run)."""
        log.warning("%s; nothing of it is stored", message)
        self._failure = message
        return Unavailable(message)

    async def _settle(self, *, verified: bool = False) -> None:
        if verified:
            self._verified = True
        async with self._progress:
            self._progress.notify_all()


Opener = Callable[[], Awaitable[Source]]


class Fetches:
    """The fetches running in this process, by key (a repository and a digest): a request for
    a blob joins the fetch already running for it, or starts one."""

    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Future[Fetch]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def running(self, key: Hashable) -> Fetch | None:
        """The fetch of `key` under way, once the upstream has answered."""
        found = self._running.get(key)
        if found is None or not found.done() or found.exception() is not None:
            return None
        fetch = found.result()
        return None if fetch.failed else fetch

    async def join(
        self, key: Hashable, digest: Digest, open_: Opener, store: BlobStore | None, stored: Stored
    ) -> Fetch:
        """The fetch of `key`: the running one, or a new one, whose upstream request
        `open_()` makes (raising BlobUnknown, Unavailable, ... before any byte is read). The
        fetch runs on its own task: it goes on to the end for the store when its clients leave.
        Blobs of another digest algorithm than the store's are streamed, not stored."""
        ready = self._running.get(key)
        if ready is not None and ready.done() and self.running(key) is None:
            ready = None  # failed: its end is still being told to its readers
        if ready is None:
            ready = self._running[key] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._run(key, ready, digest, open_, store, stored))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await asyncio.shield(ready)

    async def _run(
        self,
        key: Hashable,
        ready: asyncio.Future[Fetch],
        digest: Digest,
        open_: Opener,
        store: BlobStore | None,
        stored: Stored,
    ) -> None:
        try:
            try:
                source = await open_()
            except asyncio.CancelledError:
                ready.cancel()
                raise
            except Exception as exc:
                ready.set_exception(exc)
                ready.exception()  # retrieved: the requests waiting on it raise it themselves
                return
            try:
                fetch = Fetch(digest, source.size)
            except OSError as exc:
                source.response.release()
                ready.set_exception(Unavailable(f"no room to spool {digest}: {exc.strerror}"))
                return
            ready.set_result(fetch)
            keep = store if digest.algorithm == paths.CONTENT_ALGORITHM else None
            with contextlib.suppress(Unavailable):  # logged, and raised to its readers
                await fetch.run(source, keep, stored)
            source.response.release()
        finally:
            if self._running.get(key) is ready:
                del self._running[key]

    async def close(self) -> None:
        """Stops the fetches still running (the server is stopping)."""
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
