"""The storage driver contract (moorage.storage.driver.base), run against every registered
driver. A new driver joins by registering itself: add a parameters case to `_parameters` if it
needs any."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from moorage.storage.driver import (
    InvalidPath,
    PathNotFound,
    StorageDriver,
    StorageError,
    create,
    filesystem,
    registered,
)
from moorage.storage.driver.base import ValidatingDriver
from tests.emulators import AzureServer, GcsServer
from tests.servers import S3Server

T = TypeVar("T")


_OPEN: list[StorageDriver] = []  # drivers whose per-loop connections each run() releases


def run(coroutine: Awaitable[T]) -> T:
    async def main() -> T:
        try:
            return await coroutine
        finally:
            for driver in _OPEN:
                await driver.close()

    return asyncio.run(main())


def _parameters(name: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    if name == "filesystem":
        return {"rootdirectory": str(tmp_path / "root")}
    if name == "s3":
        store: S3Server = request.getfixturevalue("s3_store")
        store.create_bucket("conformance")
        return store.params("conformance", rootdirectory=f"/{uuid.uuid4().hex}")
    if name == "gcs":
        gcs: GcsServer = request.getfixturevalue("gcs_store")
        gcs.create_bucket("conformance")
        return gcs.params("conformance", rootdirectory=f"/{uuid.uuid4().hex}")
    if name == "azure":
        azure: AzureServer = request.getfixturevalue("azure_store")
        azure.create_container("conformance")
        return azure.params("conformance", rootdirectory=f"/{uuid.uuid4().hex}")
    return {}


@pytest.fixture(params=registered())
def driver(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageDriver]:
    created = create(request.param, _parameters(request.param, tmp_path, request))
    _OPEN.append(created)
    try:
        yield created
    finally:
        _OPEN.remove(created)


async def read_all(driver: StorageDriver, path: str, offset: int = 0) -> bytes:
    return b"".join([chunk async for chunk in driver.reader(path, offset)])


def test_every_builtin_driver_is_registered() -> None:
    assert {"filesystem", "inmemory"} <= set(registered())


def test_create_wraps_for_path_validation(driver: StorageDriver) -> None:
    assert isinstance(driver, ValidatingDriver)
    assert driver.name in registered()


# get_content / put_content


def test_put_then_get(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/a/b/c", b"hello")
        assert await driver.get_content("/a/b/c") == b"hello"

    run(scenario())


def test_put_empty_content(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/empty", b"")
        assert await driver.get_content("/empty") == b""
        assert (await driver.stat("/empty")).size == 0

    run(scenario())


def test_put_overwrites(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/a/file", b"a much longer first version")
        await driver.put_content("/a/file", b"short")
        assert await driver.get_content("/a/file") == b"short"
        assert (await driver.stat("/a/file")).size == 5
        assert await driver.list("/a") == ["/a/file"]

    run(scenario())


def test_put_is_atomic_for_concurrent_readers(driver: StorageDriver) -> None:
    # A reader in another thread sees the old content or the new, never a part of either.
    old, new = b"o" * 300_000, b"n" * 400_000
    run(driver.put_content("/f", old))
    started, stop = threading.Event(), threading.Event()
    seen: set[bytes] = set()

    def read_until_stopped() -> None:
        async def reads() -> None:
            while not stop.is_set():
                seen.add(await driver.get_content("/f"))
                started.set()

        run(reads())

    reader = threading.Thread(target=read_until_stopped)
    reader.start()
    assert started.wait(timeout=30)
    try:

        async def writes() -> None:
            for i in range(100):
                await driver.put_content("/f", new if i % 2 == 0 else old)

        run(writes())
    finally:
        stop.set()
        reader.join()
    assert seen <= {old, new}


def test_get_missing_raises_path_not_found(driver: StorageDriver) -> None:
    async def scenario() -> None:
        with pytest.raises(PathNotFound) as caught:
            await driver.get_content("/nothing/here")
        assert caught.value.path == "/nothing/here"
        assert caught.value.driver == driver.name

    run(scenario())


def test_get_directory_raises_path_not_found(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/dir/file", b"x")
        with pytest.raises(PathNotFound):
            await driver.get_content("/dir")

    run(scenario())


def test_path_not_found_is_a_storage_error() -> None:
    assert issubclass(PathNotFound, StorageError)
    assert issubclass(InvalidPath, StorageError)


# reader


CONTENT = bytes(range(256)) * 40  # 10240 bytes


@pytest.mark.parametrize(
    "offset", [0, 1, 5000, len(CONTENT) - 1, len(CONTENT), len(CONTENT) + 1, 10**9]
)
def test_reader_from_offset(driver: StorageDriver, offset: int) -> None:
    async def scenario() -> None:
        await driver.put_content("/blob/data", CONTENT)
        assert await read_all(driver, "/blob/data", offset) == CONTENT[offset:]

    run(scenario())


def test_reader_large_content_in_chunks(driver: StorageDriver) -> None:
    large = os.urandom(3 * (1 << 20) + 12345)

    async def scenario() -> None:
        await driver.put_content("/large", large)
        chunks = [chunk async for chunk in driver.reader("/large")]
        assert len(chunks) > 1
        assert all(chunks)
        assert b"".join(chunks) == large
        tail = (1 << 20) + 7
        assert await read_all(driver, "/large", tail) == large[tail:]

    run(scenario())


def test_reader_missing_raises_path_not_found(driver: StorageDriver) -> None:
    async def scenario() -> None:
        with pytest.raises(PathNotFound):
            await read_all(driver, "/missing")
        await driver.put_content("/dir/file", b"x")
        with pytest.raises(PathNotFound):
            await read_all(driver, "/dir")

    run(scenario())


def test_reader_negative_offset_refused(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/f", b"abc")
        with pytest.raises(StorageError):
            await read_all(driver, "/f", -1)

    run(scenario())


# writer


def test_fresh_writer_invisible_until_commit(driver: StorageDriver) -> None:
    async def scenario() -> None:
        writer = await driver.writer("/w/file")
        await writer.write(b"abc")
        await writer.write(b"def")
        assert writer.size == 6
        with pytest.raises(PathNotFound):
            await driver.get_content("/w/file")
        with pytest.raises(PathNotFound):
            await driver.stat("/w/file")
        await writer.commit()
        assert await driver.get_content("/w/file") == b"abcdef"
        assert (await driver.stat("/w/file")).size == 6

    run(scenario())


def test_fresh_writer_keeps_old_content_until_commit(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/w/file", b"old content")
        writer = await driver.writer("/w/file")
        assert writer.size == 0
        await writer.write(b"new")
        assert await driver.get_content("/w/file") == b"old content"
        await writer.commit()
        assert await driver.get_content("/w/file") == b"new"

    run(scenario())


def test_fresh_writer_cancel_discards(driver: StorageDriver) -> None:
    async def scenario() -> None:
        writer = await driver.writer("/w/file")
        await writer.write(b"abc")
        await writer.cancel()
        with pytest.raises(PathNotFound):
            await driver.get_content("/w/file")

        await driver.put_content("/w/file", b"kept")
        writer = await driver.writer("/w/file")
        await writer.write(b"discarded")
        await writer.cancel()
        assert await driver.get_content("/w/file") == b"kept"
        assert await driver.list("/w") == ["/w/file"]

    run(scenario())


def test_fresh_writer_large_content(driver: StorageDriver) -> None:
    large = os.urandom(2 * (1 << 20) + 3)

    async def scenario() -> None:
        writer = await driver.writer("/w/large")
        for start in range(0, len(large), 65536):
            await writer.write(large[start : start + 65536])
        assert writer.size == len(large)
        await writer.commit()
        assert await read_all(driver, "/w/large") == large

    run(scenario())


def test_append_writer_continues_existing_file(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/up/data", b"first-")
        writer = await driver.writer("/up/data", append=True)
        assert writer.size == 6
        await writer.write(b"second")
        assert writer.size == 12
        await writer.commit()
        assert await driver.get_content("/up/data") == b"first-second"
        assert (await driver.stat("/up/data")).size == 12

        writer = await driver.writer("/up/data", append=True)
        assert writer.size == 12
        await writer.write(b"-third")
        await writer.commit()
        assert await driver.get_content("/up/data") == b"first-second-third"

    run(scenario())


def test_append_writer_creates_missing_file(driver: StorageDriver) -> None:
    async def scenario() -> None:
        writer = await driver.writer("/up/new", append=True)
        assert writer.size == 0
        await writer.write(b"abc")
        assert writer.size == 3
        await writer.commit()
        assert await driver.get_content("/up/new") == b"abc"

    run(scenario())


def test_append_writer_bytes_kept_without_commit(driver: StorageDriver) -> None:
    # Upload data: what was received counts as progress even if the writer is never committed.
    async def scenario() -> None:
        await driver.put_content("/up/data", b"before-")
        writer = await driver.writer("/up/data", append=True)
        await writer.write(b"after")
        await writer.cancel()
        assert await driver.get_content("/up/data") == b"before-after"
        assert (await driver.stat("/up/data")).size == 12

        writer = await driver.writer("/up/data", append=True)
        assert writer.size == 12
        await writer.cancel()

    run(scenario())


# stat


def test_stat_file(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/s/file", b"12345")
        info = await driver.stat("/s/file")
        assert info.path == "/s/file"
        assert info.size == 5
        assert not info.is_dir
        assert info.modified > 0

    run(scenario())


def test_stat_directory(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/s/dir/deeper/file", b"12345")
        for path in ("/s", "/s/dir", "/s/dir/deeper"):
            info = await driver.stat(path)
            assert info.is_dir
            assert info.path == path
            assert info.size == 0

    run(scenario())


def test_stat_missing(driver: StorageDriver) -> None:
    async def scenario() -> None:
        with pytest.raises(PathNotFound):
            await driver.stat("/nothing")
        await driver.put_content("/s/file", b"x")
        with pytest.raises(PathNotFound):
            await driver.stat("/s/fil")
        with pytest.raises(PathNotFound):
            await driver.stat("/s/file/below")

    run(scenario())


# list


def test_list_direct_children_full_paths(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/l/a", b"1")
        await driver.put_content("/l/b/c", b"2")
        await driver.put_content("/l/b/d/e", b"3")
        await driver.put_content("/l-sibling/x", b"4")
        await driver.put_content("/lx", b"5")
        assert sorted(await driver.list("/l")) == ["/l/a", "/l/b"]
        assert sorted(await driver.list("/l/b")) == ["/l/b/c", "/l/b/d"]
        assert await driver.list("/l/b/d") == ["/l/b/d/e"]

    run(scenario())


def test_list_shows_every_key(driver: StorageDriver) -> None:
    # Components may start with a dot (`[A-Za-z0-9._-]+`): such keys are listed like any other.
    async def scenario() -> None:
        await driver.put_content("/h/.hidden", b"1")
        await driver.put_content("/h/visible", b"2")
        await driver.put_content("/h/.dir/file", b"3")
        assert sorted(await driver.list("/h")) == ["/h/.dir", "/h/.hidden", "/h/visible"]

    run(scenario())


def test_list_missing_raises_path_not_found(driver: StorageDriver) -> None:
    async def scenario() -> None:
        with pytest.raises(PathNotFound):
            await driver.list("/nothing")
        await driver.put_content("/l/file", b"x")
        with pytest.raises(PathNotFound):
            await driver.list("/l/fi")

    run(scenario())


# walk


def test_walk_lists_every_file_below_with_size_and_time(driver: StorageDriver) -> None:
    async def scenario() -> None:
        before = time.time() - 5
        await driver.put_content("/w/a", b"1")
        await driver.put_content("/w/b/c", b"22")
        await driver.put_content("/w/b/d/e", b"")
        await driver.put_content("/w/.hidden/f", b"4444")
        await driver.put_content("/w-sibling/x", b"5")
        await driver.put_content("/wx", b"6")
        found = {info.path: info async for info in driver.walk("/w")}
        assert {path: info.size for path, info in found.items()} == {
            "/w/a": 1,
            "/w/b/c": 2,
            "/w/b/d/e": 0,
            "/w/.hidden/f": 4,
        }
        for info in found.values():
            assert not info.is_dir
            assert before < info.modified < time.time() + 5
        assert sorted([info.path async for info in driver.walk("/w/b")]) == [
            "/w/b/c",
            "/w/b/d/e",
        ]

    run(scenario())


def test_walk_of_nothing_is_empty(driver: StorageDriver) -> None:
    async def scenario() -> None:
        assert [info async for info in driver.walk("/nothing")] == []
        await driver.put_content("/w/file", b"x")
        assert [info async for info in driver.walk("/w/fi")] == []
        assert [info async for info in driver.walk("/w/file")] == []

    run(scenario())


def test_walk_leaves_out_uncommitted_files(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/w/kept", b"k")
        writer = await driver.writer("/w/pending")
        await writer.write(b"not yet")
        assert [info.path async for info in driver.walk("/w")] == ["/w/kept"]
        await writer.commit()
        assert sorted([info.path async for info in driver.walk("/w")]) == ["/w/kept", "/w/pending"]

    run(scenario())


def test_walk_pages_through_many_keys(driver: StorageDriver) -> None:
    async def scenario() -> None:
        expected = {f"/many/d{n % 7}/f{n}" for n in range(1200)}  # past a page of 1000 keys
        await asyncio.gather(*(driver.put_content(path, b"x") for path in sorted(expected)))
        assert {info.path async for info in driver.walk("/many")} == expected

    run(scenario())


# files_named


def test_files_named_finds_the_file_in_each_directory_below(driver: StorageDriver) -> None:
    async def scenario() -> None:
        before = time.time() - 5
        await driver.put_content("/f/a/link", b"1")
        await driver.put_content("/f/b/link", b"22")
        await driver.put_content("/f/c/other", b"x")  # no link: left out
        await driver.put_content("/f/d/e/link", b"x")  # deeper: left out
        await driver.put_content("/f/link", b"x")  # not in a directory below: left out
        await driver.put_content("/f-sibling/x/link", b"x")
        found = {info.path: info async for info in driver.files_named("/f", "link")}
        assert {path: info.size for path, info in found.items()} == {
            "/f/a/link": 1,
            "/f/b/link": 2,
        }
        for info in found.values():
            assert before < info.modified < time.time() + 5 and not info.is_dir
        assert [info async for info in driver.files_named("/nothing", "link")] == []
        assert [info async for info in driver.files_named("/f/link", "link")] == []

    run(scenario())


def test_files_named_in_many_directories(driver: StorageDriver) -> None:
    async def scenario() -> None:
        expected = {f"/n/d{n}/data" for n in range(1200)}  # past a page of 1000 keys
        await asyncio.gather(*(driver.put_content(path, b"x") for path in sorted(expected)))
        assert {info.path async for info in driver.files_named("/n", "data")} == expected

    run(scenario())


# move


def test_move(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/m/src", b"payload")
        await driver.move("/m/src", "/m/elsewhere/dest")
        assert await driver.get_content("/m/elsewhere/dest") == b"payload"
        with pytest.raises(PathNotFound):
            await driver.get_content("/m/src")

    run(scenario())


def test_move_replaces_dest(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/m/src", b"new")
        await driver.put_content("/m/dest", b"old and longer")
        await driver.move("/m/src", "/m/dest")
        assert await driver.get_content("/m/dest") == b"new"
        assert await driver.list("/m") == ["/m/dest"]

    run(scenario())


def test_move_onto_itself_keeps_file(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/m/file", b"same")
        await driver.move("/m/file", "/m/file")
        assert await driver.get_content("/m/file") == b"same"

    run(scenario())


def test_move_missing_source(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/m/dest", b"untouched")
        with pytest.raises(PathNotFound) as caught:
            await driver.move("/m/missing", "/m/dest")
        assert caught.value.path == "/m/missing"
        assert await driver.get_content("/m/dest") == b"untouched"

    run(scenario())


def test_move_makes_the_file_new(driver: StorageDriver) -> None:
    """What lands by a move (a finished upload) is content in use from then on."""

    async def scenario() -> None:
        await driver.put_content("/m/src", b"payload")
        before = (await driver.stat("/m/src")).modified
        await asyncio.sleep(1.1)  # S3 times have whole seconds
        await driver.move("/m/src", "/m/dest")
        assert (await driver.stat("/m/dest")).modified > before

    run(scenario())


# touch


def test_touch_renews_the_time_and_keeps_the_content(driver: StorageDriver) -> None:
    async def scenario() -> None:
        content = os.urandom(300_000)
        await driver.put_content("/t/file", content)
        before = await driver.stat("/t/file")
        await asyncio.sleep(1.1)  # S3 times have whole seconds
        await driver.touch("/t/file")
        after = await driver.stat("/t/file")
        assert after.modified > before.modified
        assert after.size == before.size
        assert await driver.get_content("/t/file") == content
        assert [info.modified async for info in driver.walk("/t")] == [after.modified]

    run(scenario())


def test_touch_missing_raises_path_not_found(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/t/dir/file", b"x")
        for path in ("/t/missing", "/t/dir"):
            with pytest.raises(PathNotFound):
                await driver.touch(path)

    run(scenario())


# prune


def test_prune_keeps_every_file_and_leaves_nothing_empty(driver: StorageDriver) -> None:
    async def scenario() -> None:
        for path in ("/p/top/a/x/file", "/p/top/a/y/file", "/p/top/b/file", "/p/other/file"):
            await driver.put_content(path, b"1")
        for path in ("/p/top/a/x/file", "/p/top/a/y/file"):
            await driver.delete(path.rpartition("/")[0])
        await driver.prune("/p/top/a", "/p")
        assert sorted(await driver.list("/p/top")) == ["/p/top/b"]  # `a` no longer listed
        await driver.prune("/p/top", "/p")  # nothing empty: nothing goes
        assert await driver.get_content("/p/top/b/file") == b"1"
        await driver.delete("/p/top/b/file")
        await driver.prune("/p/top/b", "/p")
        assert await driver.list("/p") == ["/p/other"]  # and the emptied parent went too
        assert [info.path async for info in driver.walk("/p")] == ["/p/other/file"]
        await driver.prune("/p/nothing", "/p")  # nothing to prune is no error

    run(scenario())


# delete


def test_delete_file(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/d/file", b"x")
        await driver.put_content("/d/other", b"y")
        await driver.delete("/d/file")
        with pytest.raises(PathNotFound):
            await driver.get_content("/d/file")
        assert await driver.list("/d") == ["/d/other"]

    run(scenario())


def test_delete_tree(driver: StorageDriver) -> None:
    async def scenario() -> None:
        await driver.put_content("/d/tree/a", b"1")
        await driver.put_content("/d/tree/b/c", b"2")
        await driver.put_content("/d/tree-sibling", b"3")
        await driver.put_content("/d/treex/a", b"4")
        await driver.delete("/d/tree")
        for path in ("/d/tree", "/d/tree/a", "/d/tree/b", "/d/tree/b/c"):
            with pytest.raises(PathNotFound):
                await driver.stat(path)
        assert sorted(await driver.list("/d")) == ["/d/tree-sibling", "/d/treex"]
        assert await driver.get_content("/d/treex/a") == b"4"

    run(scenario())


def test_delete_missing(driver: StorageDriver) -> None:
    async def scenario() -> None:
        with pytest.raises(PathNotFound):
            await driver.delete("/nothing")
        await driver.put_content("/d/file", b"x")
        with pytest.raises(PathNotFound):
            await driver.delete("/d/fil")

    run(scenario())


# invalid paths, refused by the validating wrapper before any driver sees them


INVALID_PATHS = [
    "",
    "/",
    "relative/path",
    "relative",
    "/a/../b",
    "/..",
    "/a/.",
    "/a/./b",
    "/a//b",
    "//a",
    "/a/",
    "/a b",
    "/a:b",
    "/a\\b",
    "/a*",
    "/caf\u00e9",
    "/a\n",
    "/a\x00b",
]


async def read_named(driver: StorageDriver, path: str) -> list[Any]:
    return [info async for info in driver.files_named(path, "link")]


def _operations(path: str) -> dict[str, Callable[[StorageDriver], Awaitable[Any]]]:
    async def read(driver: StorageDriver) -> bytes:
        return await read_all(driver, path)

    async def write(driver: StorageDriver) -> None:
        writer = await driver.writer(path)
        await writer.cancel()

    async def append(driver: StorageDriver) -> None:
        writer = await driver.writer(path, append=True)
        await writer.cancel()

    async def local_file(driver: StorageDriver) -> str | None:
        return driver.local_file(path)

    return {
        "get_content": lambda d: d.get_content(path),
        "put_content": lambda d: d.put_content(path, b"x"),
        "reader": read,
        "writer": write,
        "append": append,
        "stat": lambda d: d.stat(path),
        "list": lambda d: d.list(path),
        "move_source": lambda d: d.move(path, "/valid"),
        "move_dest": lambda d: d.move("/valid", path),
        "delete": lambda d: d.delete(path),
        "touch": lambda d: d.touch(path),
        "files_named": lambda d: read_named(d, path),
        "prune": lambda d: d.prune(path, "/valid"),
        "local_file": local_file,
    }


@pytest.mark.parametrize("path", INVALID_PATHS)
def test_invalid_paths_refused(driver: StorageDriver, path: str) -> None:
    async def scenario() -> None:
        await driver.put_content("/valid", b"x")
        for operation, call in _operations(path).items():
            with pytest.raises(InvalidPath) as caught:
                await call(driver)
            assert caught.value.path == path, operation
        assert await driver.get_content("/valid") == b"x"

    run(scenario())


@pytest.mark.parametrize("path", ["/a", "/A-Z_a.z/0-9", "/a/.b/c", "/a..b", "/docker/registry/v2"])
def test_valid_paths_accepted(driver: StorageDriver, path: str) -> None:
    async def scenario() -> None:
        await driver.put_content(path, b"ok")
        assert await driver.get_content(path) == b"ok"

    run(scenario())


# local_file


def test_local_file(driver: StorageDriver) -> None:
    run(driver.put_content("/lf/file", b"served"))
    local = driver.local_file("/lf/file")
    if local is None:
        assert driver.local_file("/lf/missing") is None  # content kept elsewhere
        return
    with open(local, "rb") as file:
        assert file.read() == b"served"
    # The file may not exist: a path is still given, and nothing is created.
    missing = driver.local_file("/lf/missing")
    assert missing is not None
    assert not os.path.exists(missing)


def test_local_file_by_driver(tmp_path: Path) -> None:
    assert create("inmemory", {}).local_file("/a/b") is None
    filesystem = create("filesystem", {"rootdirectory": str(tmp_path)})
    assert filesystem.local_file("/a/b") == str(tmp_path / "a" / "b")


# filesystem only: what a crash leaves behind


_CRASHING_WRITER = textwrap.dedent(
    """
    import asyncio, os, sys
    from moorage.storage.driver import create

    async def main() -> None:
        driver = create("filesystem", {"rootdirectory": sys.argv[1]})
        await driver.put_content("/up/other", b"committed")
        writer = await driver.writer("/up/data")
        await writer.write(b"partial" * 10000)
        os._exit(0)  # killed before commit: no cleanup runs

    asyncio.run(main())
    """
)


def test_filesystem_partial_file_never_visible_after_crash(tmp_path: Path) -> None:
    root = tmp_path / "root"
    subprocess.run([sys.executable, "-c", _CRASHING_WRITER, str(root)], check=True, timeout=60)
    driver = create("filesystem", {"rootdirectory": str(root)})

    async def scenario() -> None:
        assert not (root / "up" / "data").exists()
        with pytest.raises(PathNotFound):
            await driver.stat("/up/data")
        with pytest.raises(PathNotFound):
            await driver.get_content("/up/data")
        assert await driver.list("/up") == ["/up/other"]
        # The partial bytes went to a temp file beside the path, which is no key.
        assert len(os.listdir(root / "up")) == 2

    run(scenario())


def test_filesystem_uncommitted_writer_not_listed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    driver = create("filesystem", {"rootdirectory": str(root)})

    async def scenario() -> None:
        await driver.put_content("/up/other", b"committed")
        writer = await driver.writer("/up/data")
        await writer.write(b"partial")
        assert not (root / "up" / "data").exists()
        assert await driver.list("/up") == ["/up/other"]
        await writer.cancel()
        assert os.listdir(root / "up") == ["other"]

    run(scenario())


def test_filesystem_write_survives_a_concurrent_prune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prune removing a directory between a writer's making it and creating its file costs
    the writer nothing: it makes the directory again."""
    driver = create("filesystem", {"rootdirectory": str(tmp_path)})
    real_make_parents = filesystem._make_parents
    pruned: list[str] = []

    def make_parents_then_prune(path: str) -> list[str]:
        made = real_make_parents(path)
        if made and len(pruned) < 2:  # the first two attempts lose their directory at once
            pruned.append(made[0])
            os.rmdir(made[0])
        return made

    async def scenario() -> None:
        await driver.put_content("/w/src", b"4")
        pruned.clear()
        await driver.put_content("/w/c/d/link", b"2")
        assert len(pruned) == 2
        pruned.clear()
        writer = await driver.writer("/w/e/data")
        await writer.write(b"3")
        await writer.commit()
        assert len(pruned) == 2
        pruned.clear()
        await driver.move("/w/src", "/w/f/g/data")

    monkeypatch.setattr(filesystem, "_make_parents", make_parents_then_prune)
    run(scenario())
    assert len(pruned) == 2
    assert (tmp_path / "w/c/d/link").read_bytes() == b"2"
    assert (tmp_path / "w/e/data").read_bytes() == b"3"
    assert (tmp_path / "w/f/g/data").read_bytes() == b"4"


def test_filesystem_temp_names_differ_in_forked_workers() -> None:
    """Workers forked from one supervisor write aside under names of their own."""
    from moorage.storage.driver import filesystem

    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker
        os.write(write, filesystem._temp_name("/a/link").encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 4096).decode()
    os.close(read)
    os.waitpid(pid, 0)
    ours = filesystem._temp_name("/a/link")
    assert child.startswith("/a/link~") and ours.startswith("/a/link~")
    assert child.split("-")[0] != ours.split("-")[0]
