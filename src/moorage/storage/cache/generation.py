"""Keeping per-process descriptor caches true across the worker processes of one server.

Each worker keeps its own in-memory cache. Every `forget` (what a delete does, before and after
changing storage) bumps a counter the workers share in a mapped file; every cache call first
compares it with the value this process last saw and drops the whole local cache when it moved.
Deletes are rare, so dropping everything costs little, and a look-up costs one read of shared
memory. An entry is stored only if the counter has not moved since the look-up that missed
it: the read of storage behind it may predate a delete.
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct

from moorage.registry.digest import Digest
from moorage.storage.cache.base import CachedBlob
from moorage.storage.cache.inmemory import InMemoryCache

_COUNTER = struct.Struct("<Q")


class Generation:
    """A counter in a file shared by the processes that map it, mapped for the process's
    life."""

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _COUNTER.size:
                os.ftruncate(fd, _COUNTER.size)
            self._map = mmap.mmap(fd, _COUNTER.size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd

    def value(self) -> int:
        return int(_COUNTER.unpack_from(self._map)[0])

    def bump(self) -> int:
        """Adds one, atomically across processes; returns the value it had before."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            before = self.value()
            _COUNTER.pack_into(self._map, 0, before + 1)
            return before
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


class GenerationalCache:
    """An in-memory cache dropped whenever another process sharing `generation` forgets."""

    MAX_MISSES = 10_000  # look-ups awaiting their set; beyond, the oldest are not stored

    def __init__(self, inner: InMemoryCache, generation: Generation) -> None:
        self.inner = inner
        self.name = inner.name
        self.generation = generation
        self._seen = generation.value()
        # (scope, digest) -> the counter when its look-up missed
        self._misses: dict[tuple[str | None, Digest], int] = {}

    def _current(self) -> bool:
        """True when no process forgot anything since this one last looked; else drops the
        local cache and starts over from the new value."""
        value = self.generation.value()
        if value == self._seen:
            return True
        self.inner.clear()
        self._seen = value
        return False

    async def get(self, scope: str | None, digest: Digest) -> CachedBlob | None:
        found = await self.inner.get(scope, digest) if self._current() else None
        if found is None:
            if len(self._misses) >= self.MAX_MISSES:
                self._misses.clear()
            self._misses[(scope, digest)] = self._seen
        return found

    async def set(self, scope: str | None, digest: Digest, blob: CachedBlob) -> None:
        """Stores what a look-up that missed went on to read, unless anything was forgotten
        since that look-up (or, with no look-up before, since this process last looked)."""
        missed_at = self._misses.pop((scope, digest), None)
        if self._current() and missed_at in (None, self._seen):
            await self.inner.set(scope, digest, blob)

    async def forget(self, scope: str | None, digest: Digest) -> None:
        await self.inner.forget(scope, digest)
        before = self.generation.bump()
        if before != self._seen:  # another process forgot something too
            self.inner.clear()
        self._seen = before + 1

    async def close(self) -> None:
        await self.inner.close()  # the mapping stays: it lives as long as the process
