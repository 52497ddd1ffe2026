"""The catalog: every repository name, sorted, kept in memory so that a page costs the same
whatever the registry's size.

The list is built by one walk of storage, extended by this process's own writes as they happen,
and re-walked in the background once it is older than `refresh` seconds when asked for, so that
repositories made or removed out of band appear or go within that time. A repository deleted
(through the API or the web UI) or emptied by garbage collection is removed from it at once.
With a shared name set (Redis between replicas, a file between the workers of one server), the
set is what every process lists: names one process adds or removes are in the others' next
answer.
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
    """Repository names shared between processes. Every call may fail: the catalog then goes
    on with what it knows."""

    async def add(self, names: list[str]) -> None: ...

    async def remove(self, names: list[str]) -> None: ...

    async def version(self) -> int:
        """Changes whenever a name is added or removed."""
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
        self._unshared: set[str] = set()  # listed here, not (yet) in the shared set
        self._during_walk: set[str] | None = None  # added while a walk runs
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
            self._during_walk = set()  # from now on: the walk may not see what is added
            self._rebuilding = asyncio.create_task(self._rebuild_in_background())
        if self.shared is not None:
            try:
                version = await self.shared.version()
                if version != self._shared_version:
                    self._set(set(await self.shared.all()) | self._unshared)
                    self._shared_version = version
            except Exception as exc:  # the shared set is an optimisation, never a dependency
                log.debug("shared catalog unavailable: %s", exc)
        assert self._names is not None
        return self._names

    def add(self, name: str) -> None:
        """Records a repository this process just created (cheap when already known)."""
        if self._during_walk is not None:
            self._during_walk.add(name)
        if name in self._known or self._names is None:
            return
        self._known.add(name)
        bisect.insort(self._names, name)
        self.changes += 1
        if self.shared is not None:
            self._unshared.add(name)
            asyncio.get_running_loop().create_task(self._share([name]))

    async def remove(self, name: str) -> None:
        """Forgets a repository that is gone from storage (emptied by garbage collection)."""
        for names in (self._known, self._unshared, self._during_walk or set()):
            names.discard(name)
        if self._names is not None and name in self._names:
            self._names.remove(name)
            self.changes += 1
        if self.shared is not None:
            try:
                await self.shared.remove([name])
            except Exception as exc:
                log.warning("shared catalog unavailable, %s stays listed elsewhere: %s", name, exc)

    def _set(self, names: set[str]) -> None:
        listed = sorted(names)
        if listed != self._names:
            self.changes += 1
        self._names, self._known = listed, names

    async def _share(self, names: list[str]) -> None:
        assert self.shared is not None
        try:
            await self.shared.add(names)
        except Exception as exc:
            log.debug("shared catalog unavailable: %s", exc)
            return
        self._unshared.difference_update(names)

    async def _version(self) -> int | None:
        assert self.shared is not None
        try:
            return await self.shared.version()
        except Exception as exc:
            log.debug("shared catalog unavailable: %s", exc)
            return None

    async def _rebuild(self) -> None:
        """Walks storage. With a shared set, what the walk found joins it, unless a name was
        removed meanwhile (the walk may have listed it before it went: the next one is
        trusted); the list itself is then the shared set's."""
        started = time.monotonic()
        before = await self._version() if self.shared is not None else None
        if self._during_walk is None:
            self._during_walk = set()
        try:
            walked = set(await self._walk()) | self._during_walk
        finally:
            self._during_walk = None
        if self.shared is None:
            self._set(walked)
        elif before is not None and await self._version() == before:
            self._unshared |= walked  # until the set has them
            await self._share(sorted(walked))
            if self._names is None:
                self._set(walked)
        elif before is None or self._names is None:
            self._unshared |= walked  # the set cannot be reached: this walk is the list
            self._set(walked | self._known)
        self._built_at = started

    async def _rebuild_in_background(self) -> None:
        try:
            await self._rebuild()
        except Exception:
            log.exception("catalog refresh failed; serving the previous list")
            self._built_at = time.monotonic()
        finally:
            self._rebuilding = None


class FileNames:
    """Repository names shared by the worker processes of one server: a file they append to,
    a name a line, `-name` when a name goes (names never start with `-`); its size is its
    version. Each process appends only changes to what the file says, so it holds each name a
    few times at most (workers that start together may each append the walk they made)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._there: set[str] = set()  # what the file held when last read, with own changes
        self._read_at: int | None = None  # the file's size then

    async def _current(self) -> set[str]:
        if self._read_at is None or self._read_at != await self.version():
            await self.all()
        return self._there

    async def add(self, names: list[str]) -> None:
        there = await self._current()
        new = [name for name in dict.fromkeys(names) if name not in there]
        self._append(new)
        there.update(new)

    async def remove(self, names: list[str]) -> None:
        there = await self._current()
        gone = [name for name in dict.fromkeys(names) if name in there]
        self._append([f"-{name}" for name in gone])
        there.difference_update(gone)

    def _append(self, lines: list[str]) -> None:
        if not lines:
            return
        data = "".join(f"{line}\n" for line in lines).encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)  # one appending write
            after = os.fstat(fd).st_size
        finally:
            os.close(fd)
        if self._read_at == after - len(data):  # nobody else wrote in between
            self._read_at = after

    async def version(self) -> int:
        try:
            return os.stat(self.path).st_size
        except FileNotFoundError:
            return 0

    async def all(self) -> list[str]:
        size, lines = await asyncio.to_thread(self._read)
        there: dict[str, None] = {}
        for line in lines:
            if line.startswith("-"):
                there.pop(line[1:], None)
            else:
                there[line] = None
        self._there, self._read_at = set(there), size
        return list(there)

    def _read(self) -> tuple[int, list[str]]:
        try:
            with open(self.path, encoding="utf-8") as file:
                text = file.read()
        except FileNotFoundError:
            return 0, []
        # A line without its newline is still being written: it comes with the next size.
        complete = text[: text.rfind("\n") + 1]
        return len(complete.encode()), [line for line in complete.splitlines() if line]
