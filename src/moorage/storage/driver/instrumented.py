"""A driver wrapper that times every operation: composed once around each configured driver."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from moorage.storage.driver.base import FileInfo, FileWriter, StorageDriver

Observe = Callable[[str, str, float], None]  # (driver, operation, seconds)
T = TypeVar("T")


class InstrumentedDriver:
    def __init__(self, inner: StorageDriver, observe: Observe) -> None:
        self.inner = inner
        self.name = inner.name
        self._observe = observe

    async def _timed(self, operation: str, call: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            return await call
        finally:
            self._observe(self.name, operation, time.perf_counter() - start)

    async def get_content(self, path: str) -> bytes:
        return await self._timed("get_content", self.inner.get_content(path))

    async def put_content(self, path: str, content: bytes) -> None:
        await self._timed("put_content", self.inner.put_content(path, content))

    def reader(self, path: str, offset: int = 0) -> AsyncIterator[bytes]:
        return self.inner.reader(path, offset)

    async def writer(self, path: str, *, append: bool = False) -> FileWriter:
        return await self._timed("writer", self.inner.writer(path, append=append))

    async def stat(self, path: str) -> FileInfo:
        # What every manifest GET by tag does: timed here without _timed's extra coroutine.
        start = time.perf_counter()
        try:
            return await self.inner.stat(path)
        finally:
            self._observe(self.name, "stat", time.perf_counter() - start)

    async def list(self, path: str) -> list[str]:
        return await self._timed("list", self.inner.list(path))

    def walk(self, path: str) -> AsyncIterator[FileInfo]:
        return self.inner.walk(path)

    def files_named(self, path: str, name: str) -> AsyncIterator[FileInfo]:
        return self.inner.files_named(path, name)

    async def move(self, source: str, dest: str) -> None:
        await self._timed("move", self.inner.move(source, dest))

    async def touch(self, path: str) -> None:
        await self._timed("touch", self.inner.touch(path))

    async def prune(self, path: str, top: str) -> None:
        await self._timed("prune", self.inner.prune(path, top))

    async def delete(self, path: str) -> None:
        await self._timed("delete", self.inner.delete(path))

    def local_file(self, path: str) -> str | None:
        return self.inner.local_file(path)

    async def redirect_url(self, path: str) -> str | None:
        return await self.inner.redirect_url(path)

    async def close(self) -> None:
        await self.inner.close()

    def preload(self) -> None:
        self.inner.preload()
