"""The blob descriptor cache contract.

It remembers what is immutable or changes only by an explicit delete: that content exists under a
digest and how large it is (scope None), and that a repository links a digest to the digest its
content is stored under (scope: the repository's name). Tags are never cached: they move.
Whoever deletes a link or content calls `forget` for it, so the cache is never more permissive
than storage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from moorage.registry.digest import Digest


class CacheUnavailable(Exception):
    """A shared cache cannot be reached, so an entry cannot be removed from it now."""


@dataclass(frozen=True)
class CachedBlob:
    stored: Digest  # the digest the content is stored under
    size: int


class BlobDescriptorCache(Protocol):
    name: str

    async def get(self, scope: str | None, digest: Digest) -> CachedBlob | None:
        """What is known of `digest` globally (scope None) or in one repository; None when
        nothing is cached."""
        ...

    async def set(self, scope: str | None, digest: Digest, blob: CachedBlob) -> None: ...

    async def forget(self, scope: str | None, digest: Digest) -> None:
        """Removes the entry. Raises CacheUnavailable when the cache cannot be reached: the
        caller must then not delete, or a stale entry could outlive the delete."""
        ...

    async def close(self) -> None:
        """Releases connections; the cache reconnects if used again."""
        ...


class MeasuredCache:
    """Counts hits and misses of any cache (`observe(cache_name, hit)`)."""

    def __init__(self, inner: BlobDescriptorCache, observe: Callable[[str, bool], None]):
        self.inner = inner
        self.name = inner.name
        self._observe = observe

    async def get(self, scope: str | None, digest: Digest) -> CachedBlob | None:
        found = await self.inner.get(scope, digest)
        self._observe(self.name, found is not None)
        return found

    async def set(self, scope: str | None, digest: Digest, blob: CachedBlob) -> None:
        await self.inner.set(scope, digest, blob)

    async def forget(self, scope: str | None, digest: Digest) -> None:
        await self.inner.forget(scope, digest)

    async def close(self) -> None:
        await self.inner.close()


CacheFactory = Callable[[dict[str, Any]], BlobDescriptorCache]
_FACTORIES: dict[str, CacheFactory] = {}


def register(name: str, factory: CacheFactory) -> None:
    _FACTORIES[name] = factory


def registered() -> list[str]:
    return sorted(_FACTORIES)


def create(name: str, options: dict[str, Any]) -> BlobDescriptorCache:
    """Raises KeyError for an unknown name."""
    return _FACTORIES[name](options)
