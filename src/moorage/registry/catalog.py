"""The catalog: every repository name, sorted, kept in memory so that a page costs the same
whatever the registry's size.

The list is built by one walk of storage, extended by this process's own writes as they happen,
and re-walked in the background once it is older than `refresh` seconds when asked for, so that
repositories made or removed out of band appear or go within that time. With a shared name set
(Redis, for replicas), names one replica adds are in the others' next answer; a repository one
process deletes leaves its list at once and the others' at their next walk.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

log = logging.getLogger("moorage.catalog")

DEFAULT_REFRESH = 30.0


class SharedNames(Protocol):
    """Repository names shared between replicas. Every call may fail: the catalog then goes on
    with what it knows."""

    async def add(self, names: list[str]) -> None: ...

    async def version(self) -> int:
        """Changes whenever a name is added."""
        ...

    async def all(self) -> list[str]: ...


class Catalog:
    def __init__(
        self,
        walk: Callable[[], Awaitable[list[str]]],
        refresh: float = DEFAULT_REFRESH,
        shared: SharedNames | None = None,
    ) -> None:
        self._walk = walk
        self.refresh = refresh
        self.shared = shared
        self._shared_version: int | None = None
        self._names: list[str] | None = None
        self._known: set[str] = set()
        self.changes = 0  # counts changes to the list, for those who keep what they derive of it
        self._shared_seen: set[str] = set()  # names read from the shared set so far
        # names added since a walk was asked for: kept whether or not the walk finds them
        self._walking: set[str] | None = None
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
            self._walking = set()
            self._rebuilding = asyncio.create_task(self._rebuild_in_background())
        if self.shared is not None:
            try:
                version = await self.shared.version()
                if version != self._shared_version:
                    shared = set(await self.shared.all())
                    # only names new to the set: one deleted here since stays deleted
                    self._merge(sorted(shared - self._shared_seen))
                    self._shared_seen |= shared
                    self._shared_version = version
            except Exception as exc:  # the shared set is an optimisation, never a dependency
                log.debug("shared catalog unavailable: %s", exc)
        assert self._names is not None
        return self._names

    def add(self, name: str) -> None:
        """Records a repository this process just created (cheap when already known)."""
        if name in self._known or self._names is None:
            return
        self._merge([name])
        if self._walking is not None:
            self._walking.add(name)
        if self.shared is not None:
            asyncio.get_running_loop().create_task(self._share([name]))

    def remove(self, name: str) -> None:
        """Drops a repository this process just deleted."""
        if name in self._known and self._names is not None:
            self._known.discard(name)
            self._names.remove(name)
            self.changes += 1
        if self._walking is not None:
            self._walking.discard(name)

    def _merge(self, names: list[str]) -> None:
        assert self._names is not None
        for name in names:
            if name not in self._known:
                self._known.add(name)
                bisect.insort(self._names, name)
                self.changes += 1

    async def _share(self, names: list[str]) -> None:
        assert self.shared is not None
        try:
            await self.shared.add(names)
        except Exception as exc:
            log.debug("shared catalog unavailable: %s", exc)

    async def _rebuild(self) -> None:
        started = time.monotonic()
        if self._walking is None:
            self._walking = set()
        try:
            names = await self._walk()
            # Keep what this process added while the walk was under way.
            merged = sorted(set(names) | self._walking)
        finally:
            self._walking = None
        if merged != self._names:
            self.changes += 1
        self._names, self._known, self._built_at = merged, set(merged), started
        if self.shared is not None:
            await self._share(merged)  # so replicas started later know them at once

    async def _rebuild_in_background(self) -> None:
        try:
            await self._rebuild()
        except Exception:
            log.exception("catalog refresh failed; serving the previous list")
            self._built_at = time.monotonic()
        finally:
            self._rebuilding = None


class FileNames:
    """Repository names shared by the worker processes of one server: a file they append
    names to, one per line, whose size is its version. Each process appends only names it has
    not written or read there yet, so the file holds each name a few times at most (workers
    that start together may each append the walk they made)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._there: set[str] | None = None  # what the file holds, once read

    async def add(self, names: list[str]) -> None:
        if self._there is None:  # a worker (re)started on a file others already wrote
            await self.all()
        assert self._there is not None
        new = [name for name in dict.fromkeys(names) if name not in self._there]
        if not new:
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, "".join(f"{name}\n" for name in new).encode())  # one appending write
        finally:
            os.close(fd)
        self._there.update(new)

    async def version(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    async def all(self) -> list[str]:
        names = await asyncio.to_thread(self._read)
        self._there = (self._there or set()) | set(names)
        return names

    def _read(self) -> list[str]:
        try:
            with open(self.path, encoding="utf-8") as file:
                text = file.read()
        except FileNotFoundError:
            return []
        # A line without its newline is still being written: its name comes with the next size.
        return [line for line in text[: text.rfind("\n") + 1].splitlines() if line]
