"""The filesystem driver: keys are files below `rootdirectory`, laid out as distribution's.

Small operations (stat, links, manifests) run inline: they hit the page cache and take
microseconds, far less than a hop to a worker thread. Deletes (removing a directory waits on the
filesystem's journal) and operations over whole trees (walk, prune) run in a worker thread.
Files are written aside and renamed into place, so a killed server never leaves a half-written
file visible; a write that fails also takes away the directories it made, so that no empty one
is left to list (as a tag, or a repository). A write whose directory a concurrent prune removes
between making it and creating the file makes it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import itertools
import os
import shutil
import stat
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, BinaryIO, TypeVar

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
WALK_BATCH = 2048  # directory entries a walk reads per hop to its worker thread
INLINE_BATCH = 256  # entries read inline first: most walks (a repository's links) end there
SMALL_DIRECTORY = 16  # files in a directory removed without rmtree (a link's, a blob's)
CREATE_ATTEMPTS = 5  # makes of a directory a concurrent prune may remove each time
T = TypeVar("T")


# In every temp file's name: a character no key component may hold (`[A-Za-z0-9._-]+`), so a
# temp file can never be taken for a key, nor collide with one.
TEMP_MARK = "~"


# A random name for this process, drawn again in each forked worker, and a counter: temp names
# unique across processes and hosts, without a draw of randomness per file.
_process = uuid.uuid4().hex
_counter = itertools.count()


def _new_process() -> None:
    global _process
    _process = uuid.uuid4().hex


os.register_at_fork(after_in_child=_new_process)


def _temp_name(path: str) -> str:
    head, _, tail = path.rpartition("/")
    return f"{head}/{tail}{TEMP_MARK}{_process}-{next(_counter)}.tmp"


class FilesystemWriter:
    def __init__(self, driver: FilesystemDriver, path: str, append: bool) -> None:
        self._driver = driver
        self._path = path
        self._append = append
        # A fresh file is written aside and renamed in on commit; appends go to the file itself.
        self._target = path if append else _temp_name(path)
        self._made: list[str] = []
        try:
            self._file: BinaryIO = _in_directory(
                self._target,
                lambda: open(self._target, "ab" if append else "wb"),  # noqa: SIM115
                self._made,
            )
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
            with _in_directory(temp, lambda: open(temp, "wb"), made) as file:
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
        """A small tree is read inline, as a stat is; a larger one some thousand entries at a
        time on a worker thread, so that a tree of a million files neither blocks the event loop
        nor sits in memory whole."""
        files, pending = _scan_some([self._full(path)], INLINE_BATCH)
        while True:
            for full, size, modified in files:
                yield FileInfo(full[len(self.root) :], size, modified, False)
            if not pending:
                return
            files, pending = await asyncio.to_thread(_scan_some, pending, WALK_BATCH)

    async def files_named(self, path: str, name: str) -> AsyncIterator[FileInfo]:
        """One listing of `path`, then a stat of each `*/name`: inline for a few, on a worker
        thread for more."""
        full = self._full(path)
        try:
            children = os.listdir(full)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageError(NAME, f"list {path}: {exc}") from exc
        for start in range(0, len(children), WALK_BATCH):
            batch = children[start : start + WALK_BATCH]
            if len(children) <= INLINE_BATCH:
                found = _stat_named(full, batch, name)
            else:
                found = await asyncio.to_thread(_stat_named, full, batch, name)
            for child, size, modified in found:
                yield FileInfo(f"{path}/{child}/{name}", size, modified, False)

    async def move(self, source: str, dest: str) -> None:
        full_source, full_dest = self._full(source), self._full(dest)
        made: list[str] = []
        try:
            os.utime(full_source)  # moved content is new where it lands

            def replace() -> None:
                try:
                    os.replace(full_source, full_dest)
                except FileNotFoundError:
                    if not os.path.exists(full_source):
                        raise PathNotFound(NAME, source) from None
                    raise  # the destination's directory was pruned: make it again

            _in_directory(full_dest, replace, made)
        except PathNotFound:
            _remove_made(made)
            raise
        except (FileNotFoundError, NotADirectoryError) as exc:
            _remove_made(made)
            raise PathNotFound(NAME, source) from exc
        except OSError as exc:
            _remove_made(made)
            raise _failure("move", f"{source} to {dest}", exc) from exc

    async def touch(self, path: str) -> None:
        full = self._full(path)
        try:
            if os.path.isdir(full):
                raise PathNotFound(NAME, path)
            os.utime(full)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise PathNotFound(NAME, path) from exc
        except OSError as exc:
            raise StorageError(NAME, f"touch {path}: {exc}") from exc

    async def prune(self, path: str, top: str) -> None:
        try:
            await asyncio.to_thread(_prune, self._full(path), self._full(top))
        except OSError as exc:
            raise StorageError(NAME, f"prune {path}: {exc}") from exc

    async def delete(self, path: str) -> None:
        """Renames the file or tree aside (atomic: of concurrent deletes exactly one succeeds,
        the others find nothing) and then removes it; what a failed removal leaves carries
        TEMP_MARK, so it is never taken for a key. Runs on a worker thread: removing a
        directory waits on the filesystem's journal (milliseconds on a busy disk), and
        concurrent deletes (a garbage collection's) then wait together rather than in turn."""
        await asyncio.to_thread(self._delete, path)

    def _delete(self, path: str) -> None:
        full = self._full(path)
        aside = _temp_name(full)
        try:
            os.rename(full, aside)
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise PathNotFound(NAME, path) from exc
        except OSError as exc:
            raise StorageError(NAME, f"delete {path}: {exc}") from exc
        try:
            if not stat.S_ISDIR(os.lstat(aside).st_mode):
                os.unlink(aside)
            elif not _remove_small(aside):
                shutil.rmtree(aside)
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


def _remove_small(directory: str) -> bool:
    """Removes a directory holding only a few files (a link's, a blob's) with fewer system calls
    than rmtree; False, having removed nothing, for any other."""
    with os.scandir(directory) as listing:
        entries = list(itertools.islice(listing, SMALL_DIRECTORY + 1))
    if len(entries) > SMALL_DIRECTORY or any(e.is_dir(follow_symlinks=False) for e in entries):
        return False
    for entry in entries:
        os.unlink(entry.path)
    os.rmdir(directory)
    return True


def _scan_some(
    pending: list[str], budget: int
) -> tuple[list[tuple[str, int, float]], list[str]]:
    """Reads directories off `pending` (depth first) until about `budget` entries are read:
    their files (path, size, mtime) and the directories still to read. What a writer has not
    committed (TEMP_MARK) and what is gone meanwhile are left out."""
    pending = list(pending)
    files: list[tuple[str, int, float]] = []
    read = 0
    while pending and read < budget:
        directory = pending.pop()
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise StorageError(NAME, f"walk {directory}: {exc}") from exc
        read += len(entries) + 1
        for entry in entries:
            if TEMP_MARK in entry.name:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                elif entry.is_file():
                    st = entry.stat()
                    files.append((entry.path, st.st_size, st.st_mtime))
            except FileNotFoundError:
                continue  # removed since the listing
    return files, pending


def _stat_named(directory: str, children: list[str], name: str) -> list[tuple[str, int, float]]:
    """(child, size, mtime) of each `directory/child/name` that is a file."""
    found = []
    for child in children:
        if TEMP_MARK in child:
            continue
        try:
            st = os.stat(f"{directory}/{child}/{name}")
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise StorageError(NAME, f"stat {directory}/{child}/{name}: {exc}") from exc
        if stat.S_ISREG(st.st_mode):
            found.append((child, st.st_size, st.st_mtime))
    return found


def _prune(full: str, top: str) -> None:
    """Removes the empty directories at and below `full`, deepest first, then its ancestors
    below `top` while they are empty. rmdir refuses a directory that is not empty, so a file
    written meanwhile keeps its directory."""
    for directory, _, _ in os.walk(full, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(directory)
    parent = os.path.dirname(full)
    while parent.startswith(top + "/"):
        try:
            os.rmdir(parent)
        except OSError:
            return
        parent = os.path.dirname(parent)


def _in_directory(full: str, create: Callable[[], T], made: list[str]) -> T:
    """Runs `create`, which makes a file at `full`, once `full`'s directory exists; again when
    a concurrent prune removed the directory in between (FileNotFoundError). `made` is set to
    the directories made for it (see `_make_parents`), for the caller to remove if it fails."""
    for attempt in range(CREATE_ATTEMPTS):
        try:
            made[:] = _make_parents(full)
            return create()
        except FileNotFoundError:
            if attempt == CREATE_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


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
