"""The filesystem spool (moorage.notifications.spool): inboxes merged into the log in time
order, torn and unfinished records, cursors, reading across segments, trimming."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from pathlib import Path

import pytest

from moorage.notifications import events, spool
from moorage.notifications.spool import FileLog, InboxWriter, Reader
from moorage.registry.context import Client, RequestContext

run = asyncio.run


def inbox_writer(directory: Path) -> InboxWriter:
    return InboxWriter(str(directory), events.Records("registry.test:5000\tinstance-1"))


def record(stamp: int, text: str) -> str:
    """A line shaped as a record (its second field is the stamp the merge orders by)."""
    return f"{text}\t{stamp}\t" + "\t".join(["x"] * 17)


def texts(found: list[tuple[int, str]]) -> list[str]:
    return [line.split("\t")[0] for _, line in found]


def test_inboxes_merge_in_time_order(tmp_path: Path) -> None:
    first, second = inbox_writer(tmp_path), inbox_writer(tmp_path)
    now = time.time_ns() - 1000
    first.append([record(now + 1, "a1"), record(now + 4, "a2")])
    second.append([record(now + 2, "b1")])
    second.append([record(now + 3, "b2")])
    log = FileLog(str(tmp_path))
    assert run(log.lock())
    assert run(log.collect()) == 4
    assert texts(run(log.read(Reader(0), 10))) == ["a1", "b1", "b2", "a2"]
    first.append([record(now + 5, "a3")])
    assert run(log.collect()) == 1
    assert run(log.read(Reader(4), 10)) == [(4, record(now + 5, "a3"))]
    run(log.close())


def test_records_stamped_after_a_round_began_wait_for_the_next(tmp_path: Path) -> None:
    writer = inbox_writer(tmp_path)
    now = time.time_ns()
    writer.append([record(now - 10, "past"), record(now + 60 * 10**9, "future")])
    log = FileLog(str(tmp_path))
    assert run(log.lock())
    assert run(log.collect()) == 1
    assert texts(run(log.read(Reader(0), 10))) == ["past"]


def test_unfinished_records_wait_and_torn_ones_are_skipped(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    now = time.time_ns() - 1000
    whole = record(now, "whole").encode()
    # a writer still at work: the second record has bytes missing (zeros)
    unfinished = b"\x1e" + whole + b"\n\x1e" + whole[:10] + b"\x00" * 5 + whole[15:] + b"\n"
    (inbox / "w.000001").write_bytes(unfinished + b"\x00" * 64)
    log = FileLog(str(tmp_path))
    assert run(log.lock())
    import fcntl

    held = os.open(inbox / "w.000001", os.O_RDONLY)
    fcntl.flock(held, fcntl.LOCK_EX)  # its writer is alive
    assert run(log.collect()) == 1
    assert run(log.collect()) == 0  # still waiting for the rest
    os.close(held)  # the writer died: the unfinished record is torn
    torn_then_whole = b"\x1e" + whole[:20] + b"\x1e" + record(now + 1, "after").encode() + b"\n"
    (inbox / "v.000001").write_bytes(torn_then_whole)
    assert run(log.collect()) == 1
    assert texts(run(log.read(Reader(0), 10))) == ["whole", "after"]
    assert run(log.collect()) == 0
    assert sorted(os.listdir(inbox)) == []  # read to the end, writers gone: removed


@pytest.mark.parametrize("ahead", [100, 256 << 10])  # zeros written ahead: less than a record
def test_a_full_inbox_goes_on_in_the_next_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ahead: int
) -> None:
    monkeypatch.setattr(spool, "INBOX_SIZE", 4096)
    monkeypatch.setattr(spool, "ZEROED_AHEAD", ahead)
    writer = inbox_writer(tmp_path)
    now = time.time_ns() - 10**6
    lines = [record(now + i, f"r{i}") for i in range(100)]
    for line in lines:
        writer.append([line])
    assert len(os.listdir(tmp_path / "inbox")) > 1
    log = FileLog(str(tmp_path))
    assert run(log.lock())
    while run(log.collect()):
        pass
    assert [line for _, line in run(log.read(Reader(0), 1000))] == lines
    writer.close()
    run(log.collect())
    assert os.listdir(tmp_path / "inbox") == []


@pytest.mark.parametrize("guess", [8, 512])  # a read of few records: less than one, or more
def test_a_read_of_few_records_takes_them_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, guess: int
) -> None:
    monkeypatch.setattr(spool, "RECORD_GUESS", guess)
    writer = inbox_writer(tmp_path)
    now = time.time_ns() - 10**6
    lines = [record(now + i, f"r{i}" + "x" * (3000 if i == 2 else 0)) for i in range(6)]
    writer.append(lines)
    log = FileLog(str(tmp_path))
    assert run(log.lock())
    assert run(log.collect()) == 6
    reader = Reader(0)
    found = [run(log.read(reader, 1)) for _ in range(6)]
    assert [records[0][1] for records in found] == lines
    assert run(log.read(reader, 1)) == []
    run(log.close())


def test_reading_across_segments_cursors_and_trimming(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spool, "SEGMENT_RECORDS", 3)
    writer = inbox_writer(tmp_path)
    now = time.time_ns() - 10**6
    writer.append([record(now + i, f"r{i}") for i in range(10)])
    log = FileLog(str(tmp_path))
    assert run(log.lock())
    assert run(log.collect()) == 10
    reader = Reader(0)
    assert texts(run(log.read(reader, 4))) == ["r0", "r1", "r2", "r3"]
    assert texts(run(log.read(reader, 4))) == ["r4", "r5", "r6", "r7"]
    assert texts(run(log.read(Reader(8), 10))) == ["r8", "r9"]
    run(log.save_cursor("hook", 7))
    assert run(log.load_cursor("hook")) == 7 and run(log.load_cursor("other")) is None
    run(log.trim(7))
    assert log.first == 6  # the segment holding 6, 7 and 8 stays
    assert texts(run(log.read(Reader(0), 10))) == ["r6", "r7", "r8", "r9"]
    run(log.close())
    again = FileLog(str(tmp_path))  # after a restart: the numbering goes on
    assert run(again.lock())
    assert again.next == 10
    writer.append([record(time.time_ns() - 10, "r10")])
    assert run(again.collect()) == 1
    assert run(again.read(Reader(10), 1))[0][0] == 10
    run(again.close())


def test_one_process_at_a_time(tmp_path: Path) -> None:
    first, second = FileLog(str(tmp_path)), FileLog(str(tmp_path))
    assert run(first.lock())
    assert not run(second.lock())
    run(first.close())
    assert run(second.lock())
    run(second.close())


def client(number: int) -> Client:
    return Client(f"10.0.0.{number}:5000", "registry.test", "test/1", "", "http://registry.test")


def record_event(writer: InboxWriter, target: str, context: RequestContext) -> str:
    """Writes an event with record(); the whole record (events.Records.make's line) the log
    must hold for it."""
    writer.record(target, context)
    request_id, method, who = context
    part = writer.records.client_part(who)
    return f"\t{writer.records.last}\t{target}\t{events.escaped(request_id)}\t{method}\t{part}"


def record_events(writer: InboxWriter, count: int, targets: int, clients: int) -> list[str]:
    """`count` events written with record(), cycling through targets and clients (every
    seventh request id has a character to escape); the whole records the log must hold."""
    return [
        record_event(
            writer,
            f"pull\ttarget-{i % targets}" + "\tt" * 6,
            (f"req-{i}" + ("\\" if i % 7 == 3 else ""), "GET", client(i % clients)),
        )
        for i in range(count)
    ]


def merged(tmp_path: Path) -> list[str]:
    log = FileLog(str(tmp_path))
    assert run(log.lock())
    while run(log.collect()):
        pass
    found = [line for _, line in run(log.read(Reader(0), 100_000))]
    run(log.close())
    return found


def test_an_events_parts_are_defined_once_and_merged_whole(tmp_path: Path) -> None:
    writer = inbox_writer(tmp_path)
    made = record_events(writer, 50, targets=3, clients=2)
    (inbox,) = os.listdir(tmp_path / "inbox")
    data = (tmp_path / "inbox" / inbox).read_bytes()
    assert data.count(b"\x1e=") == 5  # each target and client once
    assert data.count(b"\x1e") == 55
    assert merged(tmp_path) == made


@pytest.mark.parametrize("defined", [2, 4096])  # forgetting what was defined, or not
def test_definitions_start_again_in_each_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, defined: int
) -> None:
    monkeypatch.setattr(spool, "INBOX_SIZE", 2048)
    monkeypatch.setattr(spool, "MAX_DEFINED", defined)
    writer = inbox_writer(tmp_path)
    made = record_events(writer, 400, targets=7, clients=5)
    assert len(os.listdir(tmp_path / "inbox")) > 5
    assert merged(tmp_path) == made


def test_a_merge_resumed_after_a_restart_finds_the_definitions_it_read(tmp_path: Path) -> None:
    writer = inbox_writer(tmp_path)
    made = record_events(writer, 10, targets=2, clients=1)
    log = FileLog(str(tmp_path))
    assert run(log.lock())
    assert run(log.collect()) == 10
    run(log.close())
    # the same parts again: referred to, not defined
    again = ("req-x", "HEAD", client(0))
    made.append(record_event(writer, "pull\ttarget-0" + "\tt" * 6, again))
    assert merged(tmp_path) == made  # a new FileLog: the process that merges restarted


def test_an_event_whose_definition_is_gone_is_skipped(tmp_path: Path) -> None:
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    now = time.time_ns() - 1000
    records = [
        b"=0\tpull\ta",
        b"=1\tclient",
        f"\t{now}\t0\tr1\tGET\t1".encode(),
        f"\t{now + 1}\t7\tr2\tGET\t1".encode(),  # target 7 is defined nowhere
        f"\t{now + 2}\t0\tr3\tGET\t1".encode(),
    ]
    (inbox / "w.000001").write_bytes(b"".join(b"\x1e" + body + b"\n" for body in records))
    assert merged(tmp_path) == [
        f"\t{now}\tpull\ta\tr1\tGET\tclient",
        f"\t{now + 2}\tpull\ta\tr3\tGET\tclient",
    ]


def test_a_log_write_that_fails_part_way_loses_no_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A full disk: the merge's write takes part of its records, then fails. The numbers it
    gave stay used, in this process and after a restart: a record merged later never takes a
    number a reader may have had already."""
    first, second = inbox_writer(tmp_path), inbox_writer(tmp_path)
    first.append([record(stamp, f"e{stamp}") for stamp in (1, 3, 4, 5)])
    log = FileLog(str(tmp_path))
    assert run(log.lock())
    write, room = os.write, [150]  # a record and part of the next

    def full_disk(fd: int, data: bytes) -> int:
        if room[0] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        written = write(fd, bytes(data[: room[0]]))
        room[0] -= written
        return written

    monkeypatch.setattr(time, "time_ns", lambda: 10)
    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError):
        run(log.collect())
    monkeypatch.setattr(os, "write", write)
    second.append([record(2, "e2")])  # stamped before the failed round's cutoff
    monkeypatch.setattr(time, "time_ns", lambda: 20)
    assert run(log.collect()) == 5  # all again: at least once
    found = run(log.read(Reader(0), 100))
    numbers = [number for number, _ in found]
    assert numbers == sorted(set(numbers))  # no number twice
    assert texts(found)[-5:] == ["e1", "e2", "e3", "e4", "e5"]
    given = log.next
    run(log.close())
    reopened = FileLog(str(tmp_path))
    assert run(reopened.lock())
    assert reopened.next == given  # the torn record's number stays used
    run(reopened.close())
