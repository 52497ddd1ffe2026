"""An in-process LRU of blob descriptors: per process, lost on restart, at most `size` entries."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from moorage.registry.digest import Digest
from moorage.storage.cache.base import CachedBlob, register

NAME = "inmemory"
DEFAULT_SIZE = 10_000


class InMemoryCache:
    name = NAME

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str | None, Digest], CachedBlob] = OrderedDict()

    async def get(self, scope: str | None, digest: Digest) -> CachedBlob | None:
        key = (scope, digest)
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    async def set(self, scope: str | None, digest: Digest, blob: CachedBlob) -> None:
        self._entries[(scope, digest)] = blob
        self._entries.move_to_end((scope, digest))
        while len(self._entries) > self.size:
            self._entries.popitem(last=False)

    async def forget(self, scope: str | None, digest: Digest) -> None:
        self._entries.pop((scope, digest), None)

    def clear(self) -> None:
        self._entries.clear()

    async def close(self) -> None:
        return None


def create(options: dict[str, Any]) -> InMemoryCache:
    size = options.get("size") or DEFAULT_SIZE
    return InMemoryCache(int(size))


register(NAME, create)
