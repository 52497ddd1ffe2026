"""The in-memory driver: for tests and throwaway registries; everything is gone on exit."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from moorage.storage.driver.base import FileInfo, PathNotFound, register
from moorage.storage.driver.params import Parameters

NAME = "inmemory"
READ_CHUNK = 1 << 20


class _File:
    __slots__ = ("data", "modified")

    def __init__(self, data: bytearray) -> None:
        self.data = data
        self.modified = time.time()


class InMemoryWriter:
    def __init__(self, driver: InMemoryDriver, path: str, append: bool) -> None:
        self._driver = driver
        self._path = path
        existing = driver.files.get(path) if append else None
        # An appending writer writes straight into the stored file (its bytes are kept even
        # without commit, as the contract says); a fresh one into a buffer published on commit.
        if append:
            if existing is None:
                existing = driver.files[path] = _File(bytearray())
            self._buffer = existing.data
        else:
            self._buffer = bytearray()
        self._append = append

    @property
    def size(self) -> int:
        return len(self._buffer)

    async def write(self, data: bytes) -> None:
        self._buffer += data
        if self._append:
            self._driver.files[self._path].modified = time.time()

    async def commit(self) -> None:
        if not self._append:
            self._driver.files[self._path] = _File(self._buffer)

    async def cancel(self) -> None:
        self._buffer = bytearray()


class InMemoryDriver:
    name = NAME

    def __init__(self) -> None:
        self.files: dict[str, _File] = {}

    def _get(self, path: str) -> _File:
        try:
            return self.files[path]
        except KeyError:
            raise PathNotFound(NAME, path) from None

    def _below(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        return [key for key in self.files if key.startswith(prefix)]

    async def get_content(self, path: str) -> bytes:
        return bytes(self._get(path).data)

    async def put_content(self, path: str, content: bytes) -> None:
        self.files[path] = _File(bytearray(content))

    async def reader(self, path: str, offset: int = 0) -> AsyncIterator[bytes]:
        data = self._get(path).data
        for start in range(offset, len(data), READ_CHUNK):
            yield bytes(data[start : start + READ_CHUNK])

    async def writer(self, path: str, *, append: bool = False) -> InMemoryWriter:
        return InMemoryWriter(self, path, append)

    async def stat(self, path: str) -> FileInfo:
        found = self.files.get(path)
        if found is not None:
            return FileInfo(path, len(found.data), found.modified, False)
        below = self._below(path)
        if not below:
            raise PathNotFound(NAME, path)
        return FileInfo(path, 0, max(self.files[key].modified for key in below), True)

    async def list(self, path: str) -> list[str]:
        prefix = path.rstrip("/") + "/"
        children = {prefix + key[len(prefix) :].split("/", 1)[0] for key in self._below(path)}
        if not children:
            raise PathNotFound(NAME, path)
        return list(children)

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        for key in self._below(path):
            found = self.files.get(key)
            if found is not None:  # not deleted since the listing
                yield FileInfo(key, len(found.data), found.modified, False)

    async def files_named(self, path: str, name: str) -> AsyncIterator[FileInfo]:
        prefix = path.rstrip("/") + "/"
        for key in self._below(path):
            found = self.files.get(key)
            parts = key[len(prefix) :].split("/")
            if found is not None and len(parts) == 2 and parts[1] == name:
                yield FileInfo(key, len(found.data), found.modified, False)

    async def move(self, source: str, dest: str) -> None:
        moved = self._get(source)
        del self.files[source]
        moved.modified = time.time()
        self.files[dest] = moved

    async def touch(self, path: str) -> None:
        self._get(path).modified = time.time()

    async def prune(self, path: str, top: str) -> None:
        return None  # directories exist only while files lie below them

    async def delete(self, path: str) -> None:
        doomed = self._below(path)
        if path in self.files:
            doomed.append(path)
        if not doomed:
            raise PathNotFound(NAME, path)
        for key in doomed:
            del self.files[key]

    def local_file(self, path: str) -> str | None:
        return None

    async def redirect_url(self, path: str) -> str | None:
        return None

    async def close(self) -> None:
        return None

    def preload(self) -> None:
        return None  # nothing loaded on first use


def create(parameters: dict[str, Any]) -> InMemoryDriver:
    Parameters(NAME, parameters, ())
    return InMemoryDriver()


register(NAME, create)
