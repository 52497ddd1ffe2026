"""The filesystem driver: keys are files below `rootdirectory`, laid out as distribution's.

Small operations (stat, links, manifests) run inline: they hit the page cache and take
microseconds, far less than a hop to a worker thread. Operations over whole trees (recursive
delete) run in a worker thread. Files are written aside and renamed into place, so a killed
server never leaves a half-written file visible; a write that fails also takes away the
directories it made, so that no empty one is left to list (as a tag, or a repository).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shutil
import stat
import uuid
from collections.abc import AsyncIterator
from typing import Any, BinaryIO

from moorage.storage.driver.base import (
    FileInfo,
    PathNotFound,
    StorageError,
    StorageFull,
    register,
)
from moorage.storage.driver.params import Parameters

NAME = "filesystem"
DEFAULT_ROOT = "/var/lib/registry"
READ_CHUNK = 1 << 20


# In every temp file's name: a character no key component may hold (`[A-Za-z0-9._-]+`), so a
# temp file can never be taken for a key, nor collide with one.
TEMP_MARK = "~"


def _temp_name(path: str) -> str:
    head, _, tail = path.rpartition("/")
    return f"{head}/{tail}{TEMP_MARK}{uuid.uuid4().hex}.tmp"


class FilesystemWriter:
    def __init__(self, driver: FilesystemDriver, path: str, append: bool) -> None:
        self._driver = driver
        self._path = path
        self._append = append
        # A fresh file is written aside and renamed in on commit; appends go to the file itself.
        self._target = path if append else _temp_name(path)
        self._made = _make_parents(self._target)
        try:
            self._file: BinaryIO = open(self._target, "ab" if append else "wb")  # noqa: SIM115
        except OSError:
            _remove_made(self._made)
            raise
        self._size = self._file.seek(0, os.SEEK_END)
        self._closed = False

    @property
    def size(self) -> int:
        return self._size

    async def write(self, data: bytes) -> None:
        try:
            self._file.write(data)
        except OSError as exc:
            raise _failure("write", self._path, exc) from exc
        self._size += len(data)

    async def commit(self) -> None:
        try:
            self._close()  # writes out what is buffered: may find the disk full too
            if not self._append:
                os.replace(self._target, self._path)
        except OSError as exc:
            await self.cancel()
            raise _failure("write", self._path, exc) from exc

    async def cancel(self) -> None:
        with contextlib.suppress(OSError):  # the buffered rest is dropped: nothing to keep
            self._close()
        if not self._append:
            _unlink_quietly(self._target)
            _remove_made(self._made)

    def _close(self) -> None:
        if not self._closed:
            self._closed = True
            self._file.close()


class FilesystemDriver:
    name = NAME

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    def _full(self, path: str) -> str:
        return self.root + path

    async def get_content(self, path: str) -> bytes:
        try:
            with open(self._full(path), "rb") as file:
                return file.read()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise PathNotFound(NAME, path) from exc
        except OSError as exc:
            raise StorageError(NAME, f"read {path}: {exc}") from exc

    async def put_content(self, path: str, content: bytes) -> None:
        full = self._full(path)
        temp = _temp_name(full)
        made: list[str] = []
        try:
            made = _make_parents(full)
            with open(temp, "wb") as file:
                file.write(content)
            os.replace(temp, full)
        except OSError as exc:
            _unlink_quietly(temp)
            _remove_made(made)
            raise _failure("write", path, exc) from exc

    async def reader(self, path: str, offset: int = 0) -> AsyncIterator[bytes]:
        try:
            file = open(self._full(path), "rb")  # noqa: SIM115
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise PathNotFound(NAME, path) from exc
        with file:
            file.seek(offset)
            while chunk := file.read(READ_CHUNK):
                yield chunk

    async def writer(self, path: str, *, append: bool = False) -> FilesystemWriter:
        try:
            return FilesystemWriter(self, self._full(path), append)
        except OSError as exc:
            raise _failure("open", path, exc) from exc

    async def stat(self, path: str) -> FileInfo:
        try:
            st = os.stat(self._full(path))
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise PathNotFound(NAME, path) from exc
        except OSError as exc:
            raise StorageError(NAME, f"stat {path}: {exc}") from exc
        is_dir = stat.S_ISDIR(st.st_mode)
        version = f"{st.st_ino}:{st.st_mtime_ns}:{st.st_size}"  # a replaced file has a new inode
        return FileInfo(path, 0 if is_dir else st.st_size, st.st_mtime, is_dir, version)

    async def list(self, path: str) -> list[str]:
        try:
            names = os.listdir(self._full(path))
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise PathNotFound(NAME, path) from exc
        except OSError as exc:
            raise StorageError(NAME, f"list {path}: {exc}") from exc
        prefix = path.rstrip("/")
        return [f"{prefix}/{name}" for name in names if TEMP_MARK not in name]

    async def walk(self, path: str) -> AsyncIterator[FileInfo]:
        """Directories are read a batch at a time on a worker thread, so a tree of a million
        files neither blocks the event loop nor sits in memory whole."""
        pending = [self._full(path)]
        while pending:
            directory = pending.pop()
            files, directories = await asyncio.to_thread(_scan, directory)
            pending += directories
            for full, size, modified in files:
                yield FileInfo(full[len(self.root) :], size, modified, False)

    async def move(self, source: str, dest: str) -> None:
        full_dest = self._full(dest)
        made: list[str] = []
        try:
            made = _make_parents(full_dest)
            os.replace(self._full(source), full_dest)
        except FileNotFoundError as exc:
            _remove_made(made)
            raise PathNotFound(NAME, source) from exc
        except OSError as exc:
            _remove_made(made)
            raise _failure("move", f"{source} to {dest}", exc) from exc

    async def delete(self, path: str) -> None:
        """Renames the file or tree aside (atomic: of concurrent deletes exactly one succeeds,
        the others find nothing) and then removes it; what a failed removal leaves carries
        TEMP_MARK, so it is never taken for a key."""
        full = self._full(path)
        aside = _temp_name(full)
        try:
            os.rename(full, aside)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise PathNotFound(NAME, path) from exc
        except OSError as exc:
            raise StorageError(NAME, f"delete {path}: {exc}") from exc
        try:
            if os.path.isdir(aside) and not os.path.islink(aside):
                await asyncio.to_thread(shutil.rmtree, aside)
            else:
                os.unlink(aside)
        except OSError as exc:
            raise StorageError(NAME, f"delete {path}: {exc}") from exc

    def local_file(self, path: str) -> str | None:
        return self._full(path)

    async def redirect_url(self, path: str) -> str | None:
        return None

    async def close(self) -> None:
        return None

    def preload(self) -> None:
        return None  # nothing loaded on first use


def _scan(directory: str) -> tuple[list[tuple[str, int, float]], list[str]]:
    """A directory's files (path, size, mtime) and subdirectories, leaving out what a writer
    has not committed (TEMP_MARK) and what is gone or unreadable."""
    files: list[tuple[str, int, float]] = []
    directories: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return files, directories
    except OSError as exc:
        raise StorageError(NAME, f"walk {directory}: {exc}") from exc
    for entry in entries:
        if TEMP_MARK in entry.name:
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                directories.append(entry.path)
            elif entry.is_file():
                st = entry.stat()
                files.append((entry.path, st.st_size, st.st_mtime))
        except FileNotFoundError:
            continue  # removed since the listing
    return files, directories


def _failure(operation: str, path: str, exc: OSError) -> StorageError:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(NAME, f"{operation} {path}: {exc.strerror}")
    return StorageError(NAME, f"{operation} {path}: {exc}")


def _make_parents(path: str) -> list[str]:
    """Makes the missing directories above `path`; returns those this call made, deepest
    first, for `_remove_made` to take away if the write fails."""
    missing: list[str] = []
    parent = os.path.dirname(path)
    while not os.path.isdir(parent):
        missing.append(parent)
        parent = os.path.dirname(parent)
    made: list[str] = []
    try:
        for directory in reversed(missing):
            with contextlib.suppress(FileExistsError):  # made by a concurrent write
                os.mkdir(directory)
                made.insert(0, directory)
    except OSError:
        _remove_made(made)
        raise
    return made


def _remove_made(made: list[str]) -> None:
    """Removes directories a failed write made, deepest first, up to the first that is not
    empty (a concurrent write put something there)."""
    for directory in made:
        try:
            os.rmdir(directory)
        except OSError:
            return


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def create(parameters: dict[str, Any]) -> FilesystemDriver:
    # maxthreads bounds distribution's blocking file calls; moorage's run in a pool of its own.
    Parameters(NAME, parameters, ("rootdirectory", "maxthreads"))
    root = parameters.get("rootdirectory", DEFAULT_ROOT)
    if not isinstance(root, str) or not root:
        raise ValueError("storage.filesystem.rootdirectory: expected a directory path")
    if os.path.exists(root) and not os.path.isdir(root):
        raise ValueError(f"storage.filesystem.rootdirectory: {root} is not a directory")
    return FilesystemDriver(root)


register(NAME, create)
