"""The catalog: every repository name, sorted, kept in memory so that a page costs the same
whatever the registry's size.

The list is built by one walk of storage, extended by this process's own writes as they happen,
and re-walked in the background once it is older than `refresh` seconds when asked for, so that
repositories made by other replicas or out of band appear within that time.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("moorage.catalog")

DEFAULT_REFRESH = 30.0


class Catalog:
    def __init__(
        self, walk: Callable[[], Awaitable[list[str]]], refresh: float = DEFAULT_REFRESH
    ) -> None:
        self._walk = walk
        self.refresh = refresh
        self._names: list[str] | None = None
        self._known: set[str] = set()
        self._built_at = 0.0
        self._rebuilding: asyncio.Task[None] | None = None
        self._first_build = asyncio.Lock()

    async def names(self) -> list[str]:
        """Every repository name in lexical order. The first call walks storage; later calls
        answer at once and start a background re-walk when the list is stale."""
        if self._names is None:
            async with self._first_build:
                if self._names is None:
                    await self._rebuild()
        elif time.monotonic() - self._built_at > self.refresh and self._rebuilding is None:
            self._rebuilding = asyncio.create_task(self._rebuild_in_background())
        assert self._names is not None
        return self._names

    def add(self, name: str) -> None:
        """Records a repository this process just created (cheap when already known)."""
        if name in self._known or self._names is None:
            return
        self._known.add(name)
        bisect.insort(self._names, name)

    async def _rebuild(self) -> None:
        started = time.monotonic()
        names = await self._walk()
        # Keep what this process added while the walk was under way.
        merged = sorted(set(names) | (self._known if self._names is not None else set()))
        self._names, self._known, self._built_at = merged, set(merged), started

    async def _rebuild_in_background(self) -> None:
        try:
            await self._rebuild()
        except Exception:
            log.exception("catalog refresh failed; serving the previous list")
            self._built_at = time.monotonic()
        finally:
            self._rebuilding = None
