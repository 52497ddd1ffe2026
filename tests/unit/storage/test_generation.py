"""What the worker processes of one server share through files (moorage/workers.py): the cache
generation (storage/cache/generation.py) and the catalog's names (registry/catalog.py
FileNames). Two instances on one file stand for two processes' views of it; the counter's
atomicity is checked with real processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
from pathlib import Path

from moorage.registry.catalog import Catalog, FileNames
from moorage.registry.digest import Digest
from moorage.storage.cache.base import CachedBlob
from moorage.storage.cache.generation import Generation, GenerationalCache
from moorage.storage.cache.inmemory import InMemoryCache

X = Digest.of(b"x")
Y = Digest.of(b"y")
Z = Digest.of(b"z")
W = Digest.of(b"w")


def blob(digest: Digest, size: int = 1) -> CachedBlob:
    return CachedBlob(digest, size)


async def settle() -> None:
    """Lets the tasks scheduled so far run."""
    for _ in range(10):
        await asyncio.sleep(0)


def pair(path: Path) -> tuple[GenerationalCache, GenerationalCache]:
    """Two processes' caches over one generation file."""
    return (
        GenerationalCache(InMemoryCache(100), Generation(str(path))),
        GenerationalCache(InMemoryCache(100), Generation(str(path))),
    )


# --- Generation ----------------------------------------------------------------------------------


def test_a_new_generation_file_starts_at_zero(tmp_path: Path) -> None:
    path = tmp_path / "generation"
    assert Generation(str(path)).value() == 0
    assert path.stat().st_size == 8


def test_a_bump_in_one_is_seen_by_the_other(tmp_path: Path) -> None:
    path = str(tmp_path / "generation")
    one, other = Generation(path), Generation(path)
    assert one.value() == other.value() == 0
    assert one.bump() == 0  # the value it had before
    assert other.value() == 1
    assert other.bump() == 1
    assert one.value() == other.value() == 2
    # A third view opened later starts from what is there, not from zero.
    assert Generation(path).value() == 2


def test_bumps_from_several_processes_are_all_counted(tmp_path: Path) -> None:
    path = tmp_path / "generation"
    Generation(str(path))
    start = tmp_path / "start"
    # Each process waits for the start file, so that all bump at the same time.
    script = textwrap.dedent(
        f"""
        import os, time
        from moorage.storage.cache.generation import Generation
        generation = Generation({str(path)!r})
        while not os.path.exists({str(start)!r}):
            time.sleep(0.001)
        for _ in range(20_000):
            generation.bump()
        """
    )
    processes = [subprocess.Popen([sys.executable, "-c", script]) for _ in range(4)]
    start.touch()
    for process in processes:
        assert process.wait(timeout=120) == 0
    assert Generation(str(path)).value() == 4 * 20_000


# --- GenerationalCache ---------------------------------------------------------------------------


def test_a_forget_in_another_process_drops_what_this_one_cached(tmp_path: Path) -> None:
    a, b = pair(tmp_path / "generation")

    async def scenario() -> None:
        await a.set("repo", X, blob(X))
        await a.set(None, Y, blob(Y, 2))
        assert await a.get("repo", X) == blob(X)
        await b.forget("repo", X)
        assert await a.get("repo", X) is None
        # The whole local cache went, not only the entry forgotten.
        assert await a.get(None, Y) is None
        # And it stays gone: nothing brings the dropped entries back.
        assert await a.get("repo", X) is None
        # After that, A caches again.
        await a.set("repo", X, blob(X, 3))
        assert await a.get("repo", X) == blob(X, 3)

    asyncio.run(scenario())


def test_a_forget_of_an_entry_the_other_never_had_still_drops_this_ones(tmp_path: Path) -> None:
    a, b = pair(tmp_path / "generation")

    async def scenario() -> None:
        await a.set("repo", X, blob(X))
        await b.forget("elsewhere", Z)  # B never cached it: it does not know what A has
        assert await a.get("repo", X) is None

    asyncio.run(scenario())


def test_a_set_after_another_process_forgot_is_not_stored(tmp_path: Path) -> None:
    """What A found may have been read before B's delete: it is not kept."""
    a, b = pair(tmp_path / "generation")

    async def scenario() -> None:
        assert await a.get("repo", X) is None  # A looks, misses, goes to storage...
        await b.forget("repo", X)  # ...while B deletes
        await a.set("repo", X, blob(X))  # A did not look since
        assert await a.get("repo", X) is None
        # Now A has seen the new generation: what it finds next is kept.
        await a.set("repo", X, blob(X, 5))
        assert await a.get("repo", X) == blob(X, 5)

    asyncio.run(scenario())


def test_a_set_without_any_forget_elsewhere_is_stored(tmp_path: Path) -> None:
    a, b = pair(tmp_path / "generation")

    async def scenario() -> None:
        await a.set("repo", X, blob(X))
        await b.set("repo", X, blob(X))
        assert await a.get("repo", X) == blob(X)
        assert await b.get("repo", X) == blob(X)

    asyncio.run(scenario())


def test_a_forget_here_keeps_the_other_entries_here(tmp_path: Path) -> None:
    a, b = pair(tmp_path / "generation")

    async def scenario() -> None:
        await a.set("repo", X, blob(X))
        await a.set("repo", Y, blob(Y))
        await b.set("repo", Y, blob(Y))
        await a.forget("repo", X)
        assert await a.get("repo", X) is None
        assert await a.get("repo", Y) == blob(Y)  # A knows its own forget was the only one
        # B, though, drops everything it had: it cannot know what A forgot.
        assert await b.get("repo", Y) is None

    asyncio.run(scenario())


def test_a_forget_here_drops_everything_here_when_the_other_forgot_meanwhile(
    tmp_path: Path,
) -> None:
    a, b = pair(tmp_path / "generation")

    async def scenario() -> None:
        await a.set("repo", X, blob(X))
        await a.set("repo", Y, blob(Y))
        await b.forget("repo", Z)  # A has not looked since
        await a.forget("repo", X)
        assert await a.get("repo", Y) is None
        # A is current again after its forget: it caches and keeps entries.
        await a.set("repo", W, blob(W))
        assert await a.get("repo", W) == blob(W)
        await a.forget("repo", X)
        assert await a.get("repo", W) == blob(W)

    asyncio.run(scenario())


def test_forgets_on_both_sides_in_turn(tmp_path: Path) -> None:
    """Each side's forgets keep its own other entries and drop the other side's."""
    a, b = pair(tmp_path / "generation")

    async def scenario() -> None:
        for round_ in range(5):
            await a.set("repo", Y, blob(Y, round_))
            await b.set("repo", Y, blob(Y, round_))
            forgetter, other = (a, b) if round_ % 2 == 0 else (b, a)
            await forgetter.forget("repo", X)
            assert await forgetter.get("repo", Y) == blob(Y, round_)
            assert await other.get("repo", Y) is None

    asyncio.run(scenario())


# --- FileNames -----------------------------------------------------------------------------------


def test_names_added_in_one_are_read_in_the_other(tmp_path: Path) -> None:
    path = str(tmp_path / "repositories")
    one, other = FileNames(path), FileNames(path)

    async def scenario() -> None:
        assert await other.version() == 0  # no file yet
        assert await other.all() == []
        await one.add(["a", "b/c"])
        first = await other.version()
        assert first > 0
        assert sorted(await other.all()) == ["a", "b/c"]
        await one.add(["d"])
        assert await other.version() != first
        assert sorted(await other.all()) == ["a", "b/c", "d"]
        assert sorted(await one.all()) == ["a", "b/c", "d"]

    asyncio.run(scenario())


def test_names_already_there_do_not_grow_the_file(tmp_path: Path) -> None:
    path = tmp_path / "repositories"
    one, other = FileNames(str(path)), FileNames(str(path))

    async def scenario() -> None:
        await one.add(["a", "b", "a"])  # a repeat within one call is written once
        size = path.stat().st_size
        assert size == len("a\nb\n")
        version = await one.version()
        await one.add(["a", "b"])  # written by this process
        assert path.stat().st_size == size
        assert await other.version() == version
        assert sorted(await other.all()) == ["a", "b"]
        await other.add(["b", "a"])  # read by that process
        assert path.stat().st_size == size
        await other.add(["a", "c"])  # only the new one is appended
        assert path.read_text() == "a\nb\nc\n"

    asyncio.run(scenario())


def test_a_restarted_process_does_not_append_what_is_there(tmp_path: Path) -> None:
    """A worker started again (a new FileNames on the file others wrote) shares its walk of
    storage: only names the file lacks are appended."""
    path = tmp_path / "repositories"

    async def scenario() -> None:
        await FileNames(str(path)).add(["a", "b"])
        restarted = FileNames(str(path))
        await restarted.add(["b", "a", "c"])  # without having read the file first
        assert path.read_text() == "a\nb\nc\n"

    asyncio.run(scenario())


def test_a_trailing_partial_line_is_not_a_name(tmp_path: Path) -> None:
    path = tmp_path / "repositories"
    names = FileNames(str(path))

    async def scenario() -> None:
        path.write_text("abc")  # a write still under way: no newline yet
        assert await names.version() == 3
        assert await names.all() == []
        with path.open("a") as file:
            file.write("\nlater")
        assert await names.all() == ["abc"]
        with path.open("a") as file:
            file.write("\n")
        assert await names.all() == ["abc", "later"]

    asyncio.run(scenario())


def test_catalogs_of_two_processes_share_names_through_the_file(tmp_path: Path) -> None:
    """The catalog of each worker: one walk of (empty) storage, then names the other adds."""
    path = str(tmp_path / "repositories")

    async def nothing() -> list[str]:
        return []

    async def scenario() -> None:
        one = Catalog(nothing, shared=FileNames(path))
        other = Catalog(nothing, shared=FileNames(path))
        assert await one.names() == []
        assert await other.names() == []
        one.add("zeta")
        one.add("alpha")
        await settle()  # the shares run as tasks
        assert await other.names() == ["alpha", "zeta"]
        other.add("mid")
        await settle()
        assert await one.names() == ["alpha", "mid", "zeta"]

    asyncio.run(scenario())


def test_a_read_that_missed_before_a_forget_elsewhere_is_not_stored(tmp_path: Path) -> None:
    """The race of a delete: this process misses X and reads storage; meanwhile another
    forgets X (and changes storage); this process looks up something else, then stores what it
    read of X. The stale X must not be kept."""
    path = str(tmp_path / "generation")
    a = GenerationalCache(InMemoryCache(), Generation(path))
    b = GenerationalCache(InMemoryCache(), Generation(path))

    async def scenario() -> None:
        assert await a.get("repo", X) is None  # the miss; A goes on to read storage
        await b.forget("repo", X)  # B's delete: before...
        await b.forget("repo", X)  # ...and after changing storage
        assert await a.get("repo", Y) is None  # A moves on to the new generation
        await a.set("repo", X, blob(X, 1))  # what A read before the delete
        assert await a.get("repo", X) is None
        await a.set("repo", X, blob(X, 2))  # a read after the delete is stored again
        assert await a.get("repo", X) == blob(X, 2)

    asyncio.run(scenario())
