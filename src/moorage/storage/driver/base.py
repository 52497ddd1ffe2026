"""The storage driver contract: a dumb key/blob store. Registry semantics live above it.

Paths are absolute, slash-separated keys (`/docker/registry/v2/...`) made by moorage.storage.paths;
each component is `[A-Za-z0-9._-]+`. A directory exists while something lies below it; drivers
need not keep empty ones.

Errors: a missing path raises PathNotFound, a malformed one InvalidPath, a write that finds no
space left StorageFull; any other failure of the backend is a StorageError carrying the driver's
name. Nothing else escapes a driver.
"""

from __future__ import annotations

import functools
import importlib
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any, Protocol


class StorageError(Exception):
    """A backend failure: the operation may or may not have happened."""

    def __init__(self, driver: str, message: str) -> None:
        super().__init__(f"{driver}: {message}")
        self.driver = driver


class PathNotFound(StorageError):
    """Nothing is stored at the path."""

    def __init__(self, driver: str, path: str) -> None:
        super().__init__(driver, f"path not found: {path}")
        self.path = path


class StorageFull(StorageError):
    """No space is left for the write (a full disk, an exhausted quota). What the write stored
    is as its contract says after any failure: nothing, or for an append a prefix of the data."""


class InvalidPath(StorageError):
    """The path is not an absolute key of `[A-Za-z0-9._-]` components."""

    def __init__(self, driver: str, path: str) -> None:
        super().__init__(driver, f"invalid path: {path!r}")
        self.path = path


@dataclass(frozen=True)
class FileInfo:
    path: str
    size: int  # 0 for a directory
    modified: float  # seconds since the epoch
    is_dir: bool
    # Changes whenever the file is replaced or rewritten, where the driver can tell; None
    # where it cannot (then nothing may be cached against it).
    version: str | None = None


class FileWriter(Protocol):
    """Writes one file. Nothing is visible at the path until `commit`; `cancel` discards what was
    written by this writer. An appending writer continues the file already there, and what it
    wrote is kept whether or not it is committed: for upload data, whose size is the progress."""

    @property
    def size(self) -> int:
        """Bytes in the file so far, including what was there before an append."""
        ...

    async def write(self, data: bytes) -> None: ...

    async def commit(self) -> None: ...

    async def cancel(self) -> None: ...


class StorageDriver(Protocol):
    name: str

    async def get_content(self, path: str) -> bytes:
        """The whole file: for small files only (links, manifests)."""
        ...

    async def put_content(self, path: str, content: bytes) -> None:
        """Replaces the file atomically: readers see the old content or the new, never a part."""
        ...

    def reader(self, path: str, offset: int = 0) -> AsyncIterator[bytes]:
        """The file's bytes from `offset` on, in chunks. PathNotFound is raised on first use."""
        ...

    async def writer(self, path: str, *, append: bool = False) -> FileWriter:
        """A writer for the path; with `append`, continuing the file there (if any)."""
        ...

    async def stat(self, path: str) -> FileInfo: ...

    async def list(self, path: str) -> list[str]:
        """The full paths of the directory's direct children, in no particular order."""
        ...

    def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """Every file below the directory `path`, at any depth, in no particular order, each
        with its size and modification time: one listing of the whole tree where the backend
        can (an object store lists thousands of keys a request). Nothing for a directory that
        does not exist. Files not yet committed are not listed; a file still being appended to
        (upload data) may show fewer bytes than it has."""
        ...

    def files_named(self, path: str, name: str) -> AsyncIterator[FileInfo]:
        """The file `name` in each directory directly below `path` (`path/*/name`: a link in
        each of a repository's link directories, the data in each blob directory of a shard),
        in no particular order, each with its size and modification time; directories without
        one are left out. Nothing for a directory that does not exist. Cheaper than a walk of
        `path` where each directory must be read (a local filesystem)."""
        ...

    async def move(self, source: str, dest: str) -> None:
        """Moves a file, replacing what is at `dest`, atomically where the backend allows. The
        moved file's modification time is the time of the move."""
        ...

    async def touch(self, path: str) -> None:
        """Sets the file's modification time to now and leaves its content as it is: how content
        is marked as in use, for garbage collection. PathNotFound when there is no file."""
        ...

    async def prune(self, path: str, top: str) -> None:
        """Removes the empty directories at and below `path`, then the ancestors of `path` below
        `top` that this leaves empty. Never a file: a directory something is written into
        meanwhile stays, and the write succeeds. A driver that keeps no empty directories has
        nothing to do."""
        ...

    async def delete(self, path: str) -> None:
        """Deletes a file or a whole directory tree."""
        ...

    def local_file(self, path: str) -> str | None:
        """The operating-system path holding the file, for zero-copy serving; None for drivers
        that keep content elsewhere. The file may not exist."""
        ...

    async def redirect_url(self, path: str) -> str | None:
        """A URL a client can fetch the file from directly (a presigned URL), or None when the
        driver has no such thing."""
        ...

    async def close(self) -> None:
        """Releases the running event loop's connections; the driver reconnects if used again."""
        ...

    def preload(self) -> None:
        """Loads, outside any event loop, what the driver would load on first use and worker
        processes forked afterwards can then share (moorage/workers.py)."""
        ...


# Components of `[A-Za-z0-9._-]`, none of them `.` or `..`.
_PATH = re.compile(r"(?:/(?!\.\.?(?:/|$))[A-Za-z0-9._-]+)+")


@functools.lru_cache(maxsize=65536)
def _valid(path: str) -> bool:
    return _PATH.fullmatch(path) is not None


def check_path(driver: str, path: str) -> str:
    if not _valid(path):
        raise InvalidPath(driver, path)
    return path


class ValidatingDriver:
    """Wraps any driver once: every path is checked before the driver sees it, so drivers
    implement raw operations only."""

    def __init__(self, inner: StorageDriver) -> None:
        self.inner = inner
        self.name = inner.name

    def _check(self, path: str) -> str:
        return check_path(self.name, path)

    async def get_content(self, path: str) -> bytes:
        return await self.inner.get_content(self._check(path))

    async def put_content(self, path: str, content: bytes) -> None:
        await self.inner.put_content(self._check(path), content)

    def reader(self, path: str, offset: int = 0) -> AsyncIterator[bytes]:
        if offset < 0:
            raise StorageError(self.name, f"negative offset {offset}")
        return self.inner.reader(self._check(path), offset)

    async def writer(self, path: str, *, append: bool = False) -> FileWriter:
        return await self.inner.writer(self._check(path), append=append)

    async def stat(self, path: str) -> FileInfo:
        return await self.inner.stat(self._check(path))

    async def list(self, path: str) -> list[str]:
        return await self.inner.list(self._check(path))

    def walk(self, path: str) -> AsyncIterator[FileInfo]:
        return self.inner.walk(self._check(path))

    def files_named(self, path: str, name: str) -> AsyncIterator[FileInfo]:
        if "/" in name:
            raise InvalidPath(self.name, name)
        check_path(self.name, f"/{name}")
        return self.inner.files_named(self._check(path), name)

    async def move(self, source: str, dest: str) -> None:
        await self.inner.move(self._check(source), self._check(dest))

    async def touch(self, path: str) -> None:
        await self.inner.touch(self._check(path))

    async def prune(self, path: str, top: str) -> None:
        await self.inner.prune(self._check(path), self._check(top))

    async def delete(self, path: str) -> None:
        await self.inner.delete(self._check(path))

    def local_file(self, path: str) -> str | None:
        return self.inner.local_file(self._check(path))

    async def redirect_url(self, path: str) -> str | None:
        return await self.inner.redirect_url(self._check(path))

    async def close(self) -> None:
        await self.inner.close()

    def preload(self) -> None:
        self.inner.preload()


DriverFactory = Callable[[dict[str, Any]], StorageDriver]
_FACTORIES: dict[str, DriverFactory] = {}


_MODULES: dict[str, str] = {}  # name -> the module that registers it when imported


def register(name: str, factory: DriverFactory) -> None:
    """Makes a driver available under the name the config's `storage` section uses."""
    _FACTORIES[name] = factory


def register_module(name: str, module: str) -> None:
    """Names a driver whose module is imported only when the driver is created (one with a
    heavy client library), so that commands which never use it do not pay for loading it."""
    _MODULES[name] = module


def registered() -> list[str]:
    return sorted({*_FACTORIES, *_MODULES})


def create(name: str, parameters: dict[str, Any]) -> StorageDriver:
    """The named driver, built from its config parameters and wrapped for path validation.
    Raises KeyError for an unknown name; factories raise ValueError for bad parameters."""
    if name not in _FACTORIES and name in _MODULES:
        importlib.import_module(_MODULES[name])
    return ValidatingDriver(_FACTORIES[name](parameters))
