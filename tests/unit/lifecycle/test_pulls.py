"""Pull records: noted in memory, written by a flush at most once per record and interval by
every process together, and read back by one walk."""

from __future__ import annotations

import asyncio
from collections import Counter

from moorage.lifecycle.pulls import PullRecorder, pull_times
from moorage.registry.digest import Digest
from moorage.storage import driver as drivers
from moorage.storage import paths
from moorage.storage.driver.instrumented import InstrumentedDriver

DIGEST = Digest.of(b"manifest")


def counted() -> tuple[InstrumentedDriver, Counter[str]]:
    """An in-memory driver whose operations are counted (as /metrics counts them)."""
    operations: Counter[str] = Counter()
    driver = InstrumentedDriver(
        drivers.create("inmemory", {}), lambda _, operation, __: operations.update([operation])
    )
    return driver, operations


def test_many_pulls_one_write_per_record() -> None:
    driver, operations = counted()
    recorder = PullRecorder(driver, interval=3600)

    async def scenario() -> None:
        for _ in range(1000):
            recorder.note("team/app", "v1", DIGEST)
            recorder.note("team/app", None, DIGEST)
        assert operations["put_content"] == 0  # noting writes nothing
        assert await recorder.flush() == 2
        for _ in range(1000):
            recorder.note("team/app", "v1", DIGEST)
        assert await recorder.flush() == 0  # written within the interval: not again
        assert operations["put_content"] == 2

    asyncio.run(scenario())


def test_a_record_another_process_wrote_within_the_interval_is_not_rewritten() -> None:
    driver, operations = counted()
    first, second = PullRecorder(driver, 3600), PullRecorder(driver, 3600)

    async def scenario() -> None:
        first.note("team/app", "v1", DIGEST)
        second.note("team/app", "v1", DIGEST)
        assert await first.flush() == 1
        assert await second.flush() == 0  # its stat found the fresh record

    asyncio.run(scenario())
    assert operations["put_content"] == 1


def test_records_are_rewritten_once_the_interval_has_passed() -> None:
    driver, _ = counted()
    recorder = PullRecorder(driver, interval=0.0)

    async def scenario() -> None:
        recorder.note("a", "v1", DIGEST)
        assert await recorder.flush() == 1
        recorder.note("a", "v1", DIGEST)
        assert await recorder.flush() == 1

    asyncio.run(scenario())


def test_a_failed_flush_keeps_what_it_could_not_write() -> None:
    driver, _ = counted()
    recorder = PullRecorder(driver, interval=3600)

    async def scenario() -> None:
        recorder.note("team/app", "v1", DIGEST)
        recorder.driver = drivers.create("filesystem", {"rootdirectory": "/proc/nonexistent"})
        await recorder.close()  # logged, not raised
        recorder.driver = driver
        assert await recorder.flush() == 1

    asyncio.run(scenario())


def test_pull_times_read_back() -> None:
    driver, _ = counted()
    recorder = PullRecorder(driver, interval=3600)
    other = Digest.of(b"other")

    async def scenario() -> None:
        recorder.note("team/app", "v1", DIGEST)
        recorder.note("team/app", None, other)
        recorder.note("team/app/sub", "v9", DIGEST)
        await recorder.flush()
        await driver.put_content(paths.pulls("team/app") + "/tags/junk/deeper", b"")
        times = await pull_times(driver, "team/app")
        assert set(times.tags) == {"v1"}
        assert set(times.manifests) == {other}
        assert times.of("v1", DIGEST) == times.tags["v1"]
        assert times.of("v2", other) == times.manifests[other]  # pulled by digest
        assert times.of("v2", DIGEST) is None
        assert (await pull_times(driver, "nothing")).tags == {}

    asyncio.run(scenario())
