"""The spool on a filesystem: where events wait, durably, until every endpoint has had them.

    <directory>/
      inbox/<writer>.<n>       each serving process appends its records to a file of its own, in
                               one write per request, before the request is answered
      log/<first, 16 hex>      every inbox's records merged in time order and numbered, in
                               segments of SEGMENT_RECORDS records
      collected                how far each inbox has been merged into the log
      cursors/<hash>           per endpoint: the number of the first record it has not had
      lock                     held by the one process that merges and delivers

A record is `\\x1e` + one line (moorage.notifications.events) + `\\n`: a record cut short (a
full disk) is recognised and skipped, never misread. In an inbox, the parts of an event that
repeat (its target and its client) are written once per file, as definitions (`=<n>`, a tab
and the part), and an event's record refers to them by number: it holds its time, the two
numbers and the request's id and method, a fifth of a whole record (which is what a request
waits to write). The merge puts whole records in the log; the whole records in inboxes of
earlier versions are merged as they are.

Durability: a write reaches the kernel's page cache before the request is answered, so a
record survives the process (kill -9, a crash, a restart). A machine that loses power can
lose the last seconds of records, as it can lose the registry's own writes of those seconds
(the storage driver does not sync them either). The merging process syncs the log about once
a second; it leaves the inboxes to the kernel, since syncing pages a writer is filling would
make the writer wait for the disk.

Order: each writer's records are in time order (events.Records); the merge takes, in each
round, the records stamped before the round began, in stamp order. A record written before a
request was answered is stamped before any record that request caused anywhere else, so the
log keeps the order in which clients saw things happen.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import mmap
import os
import time
from time import time_ns as _time_ns

from moorage.notifications import events
from moorage.registry.context import Client, RequestContext

log = logging.getLogger("moorage.notifications")

RS = b"\x1e"
DEFINITION = b"="  # the first byte of a definition's record (an event's is a tab, or its id)
REFERRING_TABS = 5  # tabs in the record of an event referring to definitions (a whole one: 18)
INBOX_SIZE = 16 << 20  # bytes of an inbox file: records up to this, then the next file
SEGMENT_RECORDS = 10_000
READ_CHUNK = 4 << 20  # bytes of a log segment read at once at most
RECORD_GUESS = 512  # bytes a record of the log takes, about: what a read of N records asks for
INBOX_READ = 256 << 10  # bytes of an inbox read at once (what follows its records is zeros)
PROBE = 4096  # bytes read first: a writer that wrote nothing new costs no more
ZEROED_AHEAD = 256 << 10  # bytes of an inbox written with zeros ahead of its records at once
MAX_DEFINED = 4096  # targets and clients a writer remembers defining in its file
SYNC_INTERVAL = 1.0  # seconds between syncs of what the merge wrote and read


class InboxWriter:
    """Appends a process's records to its inbox. An inbox file is INBOX_SIZE bytes of zeros
    (sparse) mapped into memory: appending is a copy into the page cache, no system call, and
    survives the process like a write would. A record's first byte (the `\\x1e`) is stored
    last, so a reader never takes a record for complete before its bytes are all there (it
    also refuses one with a zero byte in it: a record has none, and unwritten bytes are zero).
    The file is held under an exclusive lock, which tells the merge its writer is alive; a
    full file is left for the next one.

    The zeros ahead of the records are also written (ZEROED_AHEAD bytes at a time) before
    records reach them: the page cache then holds them in large pieces, which the mapping
    takes in one fault each, where pages only allocated fault one by one. A fault costs as
    much as tens of records, and a request waits for it. (What the zeros cost the disk is
    nothing at the rates where faults matter: the records overwrite them before the kernel
    writes them out.)"""

    __slots__ = (
        "_at", "_clients", "_defined", "_definitions", "_fd", "_map", "_name", "_number",
        "_zeroed", "directory", "records",
    )  # fmt: skip

    def __init__(self, directory: str, records: events.Records) -> None:
        self.directory = os.path.join(directory, "inbox")
        self.records = records  # the process's: record() takes its times from it
        self._fd = -1
        self._map: mmap.mmap | None = None
        self._at = INBOX_SIZE  # where the next record goes; nothing open yet
        self._zeroed = INBOX_SIZE  # where the zeros written ahead of the records end
        # what this file defines, and the numbers it refers to them by: targets and clients'
        # parts by their text; clients also by the Client object's id (with the object, which
        # tells it from a later one with the same id): a lookup that reads none of its fields
        self._defined: dict[str, int] = {}
        self._clients: dict[int, tuple[Client, int]] = {}
        self._definitions = 0  # how many definitions this file has
        self._name = ""
        self._number = 0
        os.register_at_fork(after_in_child=self._forked)

    def _forked(self) -> None:
        """A forked process writes a file of its own; what it inherited is the parent's."""
        self._fd, self._map, self._at, self._name = -1, None, INBOX_SIZE, ""
        self._zeroed = INBOX_SIZE
        self._defined, self._clients, self._definitions = {}, {}, 0

    def append(self, lines: list[str]) -> None:
        """Writes whole records (events.Records.make's lines): done when this returns
        (listener.Recorder.append)."""
        for line in lines:
            body = line.encode() + b"\n"
            if self._at + 1 + len(body) > INBOX_SIZE:
                if len(body) + 1 > INBOX_SIZE:
                    log.error("notifications: an event of %d bytes is too large", len(body))
                    continue
                self._open()
            self._write(body)

    def record(self, target: str, context: RequestContext) -> None:
        """Writes the record of one event (`target`, by the request `context` tells), as
        events.Records.make would make it: done when this returns (listener.Recorder.put).
        The target and the client, which repeat, are each written once per file, as a
        definition, and the record refers to them by number. This runs for every event: the
        usual case (both defined, room ahead) is written here, without a call."""
        request_id, method, client = context
        to_target = self._defined.get(target)
        to_client = self._clients.get(id(client))
        records = self.records
        stamp = _time_ns()
        if stamp <= records.last:
            stamp = records.last + 1
        records.last = stamp
        if (
            to_target is not None
            and to_client is not None
            and to_client[0] is client
            and request_id.isprintable()  # events.escaped()'s check: nothing to escape
            and "\\" not in request_id
        ):
            body = f"\t{stamp}\t{to_target}\t{request_id}\t{method}\t{to_client[1]}\n".encode()
            at = self._at
            end = at + 1 + len(body)
            mapped = self._map
            if end <= self._zeroed and mapped is not None:  # room, with zeros written ahead
                mapped[at + 1 : end] = body
                mapped[at] = 0x1E  # its first byte last (see the class)
                self._at = end
                return
        self._put(stamp, target, events.escaped(request_id), method, client)

    def _put(self, stamp: int, target: str, request_id: str, method: str, client: Client) -> None:
        """record(), with the definitions this file lacks written first, all in the next file
        when this one has no room for them and the record."""
        part = self.records.client_part(client)
        for attempt in range(2):
            defined = self._defined
            bodies: list[bytes] = []
            numbers = []
            for text in (target, part):
                number = defined.get(text)
                if number is None:
                    number = self._definitions + len(bodies)
                    bodies.append(f"={number}\t{text}\n".encode())
                numbers.append(number)
            bodies.append(
                f"\t{stamp}\t{numbers[0]}\t{request_id}\t{method}\t{numbers[1]}\n".encode()
            )
            size = sum(1 + len(body) for body in bodies)
            if self._at + size <= INBOX_SIZE:
                break
            if attempt or size > INBOX_SIZE:
                log.error("notifications: an event of %d bytes is too large", size)
                return
            self._open()  # definitions are the file's: all of them again in the next one
        if len(defined) + 2 > MAX_DEFINED:  # parts come from clients: keep it bounded
            defined.clear()  # (what is defined again gets a new number)
            self._clients.clear()
        for text, number in zip((target, part), numbers, strict=True):
            if text not in defined:
                defined[text] = number
        if len(self._clients) >= MAX_DEFINED:  # equal Clients can be distinct objects
            self._clients.clear()
        self._clients[id(client)] = (client, numbers[1])
        self._definitions += len(bodies) - 1
        for body in bodies:
            self._write(body)

    def _write(self, body: bytes) -> None:
        """Writes one record's body (its line, with its end) where the next record goes; the
        file has room for it."""
        at = self._at
        end = at + 1 + len(body)
        if end > self._zeroed:
            self._zero(end)
        mapped = self._map
        assert mapped is not None
        mapped[at + 1 : end] = body
        mapped[at] = 0x1E
        self._at = end

    def _zero(self, end: int) -> None:
        """Writes the zeros up to `end` and ZEROED_AHEAD bytes further."""
        start = self._zeroed
        stop = min(INBOX_SIZE, end + ZEROED_AHEAD)
        os.pwrite(self._fd, bytes(stop - start), start)
        self._zeroed = stop

    def _open(self) -> None:
        if not self._name:  # a fresh process: a name of its own
            self._name = f"{time.time_ns():016x}-{os.getpid()}"
            self._number = 0
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self._number += 1
        path = os.path.join(self.directory, f"{self._name}.{self._number:06d}")
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            _allocate(fd, INBOX_SIZE)
            mapped = mmap.mmap(fd, INBOX_SIZE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        self.close()  # the previous file, complete: closing it releases its lock
        self._fd, self._map, self._at, self._zeroed = fd, mapped, 0, 0
        self._defined.clear()
        self._clients.clear()
        self._definitions = 0

    def close(self) -> None:
        if self._map is not None:
            self._map.close()
        if self._fd >= 0:
            os.close(self._fd)
        self._fd, self._map, self._at, self._zeroed = -1, None, INBOX_SIZE, INBOX_SIZE


def _allocate(fd: int, size: int) -> None:
    """Gives the file `size` bytes of zeros on disk, not a hole: a write through a mapping to
    a hole of a full filesystem kills the process (SIGBUS), where this raises ENOSPC first.
    Where fallocate is not supported, the zeros are written."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
            raise
    zeros = bytes(1 << 20)
    for offset in range(0, size, len(zeros)):
        os.pwrite(fd, zeros[: size - offset], offset)


def _records(data: bytes, complete_end: bool) -> tuple[list[bytes], int]:
    """The records in `data` (each without its framing) and how many bytes they take. Zero
    bytes are what is not written yet: a record with one, or a zero where a record should
    start, is where reading stops, unless `complete_end` (the writer is gone: what is left is
    torn, and skipped). A record cut short by the next one (a failed write) is skipped."""
    if not complete_end:  # the usual case: whole records, then bytes not written yet
        written = data.find(b"\x00")
        whole = data if written < 0 else data[:written]
        if whole[:1] == RS and whole[-1:] == b"\n":
            lines = whole.count(b"\n")
            # as many record separators as ends, each end but the last followed by one: each
            # line is one record, with neither in its body
            if whole.count(RS) == lines and whole.count(b"\n" + RS) == lines - 1:
                return whole[1:-1].split(b"\n" + RS), len(whole)
    return _records_walked(data, complete_end)


def _records_walked(data: bytes, complete_end: bool) -> tuple[list[bytes], int]:
    """_records, record by record: what finds the records among what is torn or unwritten."""
    found: list[bytes] = []
    used = 0
    while used < len(data):
        if data[used] != 0x1E:
            if data[used] == 0 and not complete_end:
                return found, used  # not written yet
            start = data.find(RS, used)  # garbage (or the zeros a dead writer left)
            if start < 0:
                return found, len(data) if complete_end else used
            used = start
        end = data.find(b"\n", used)
        following = data.find(RS, used + 1)
        if end < 0 or (following >= 0 and following < end):
            if following >= 0:  # torn by a failed write, then another record: skip it
                used = following
                continue
            return found, len(data) if complete_end else used
        body = data[used + 1 : end]
        if b"\x00" in body:  # some of its bytes are not there yet
            if not complete_end:
                return found, used
        else:
            found.append(body)
        used = end + 1
    return found, used


def _writer_gone(path: str) -> bool:
    """Whether no process holds the inbox file's lock (its writer moved on, or died)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


class FileLog:
    """The deliverer's side of a spool directory: merging the inboxes into the log, reading
    it, cursors, trimming. One process at a time (`lock`)."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.inbox = os.path.join(directory, "inbox")
        self.logdir = os.path.join(directory, "log")
        self.cursors = os.path.join(directory, "cursors")
        self._offsets: dict[str, int] = {}
        self._defined: dict[str, dict[bytes, bytes]] = {}  # each inbox's definitions read
        self._segments: list[int] = []  # first record number of each segment, ascending
        self._fd = -1  # the last segment, for appending
        self._in_segment = 0
        self.next = 0  # the number the next record gets
        self._lock = -1
        self._synced = 0.0
        self._saved_offsets: dict[str, int] = {}

    # -- ownership -------------------------------------------------------------------------

    async def keep(self) -> bool:
        """Whether this process still has the spool (a lock on a file is never lost)."""
        return self._lock >= 0

    async def lock(self) -> bool:
        """Takes the spool for this process; False while another one has it."""
        if self._lock >= 0:
            return True
        for path in (self.inbox, self.logdir, self.cursors):
            os.makedirs(path, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.directory, "lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._lock = fd
        self._load()
        return True

    async def close(self) -> None:
        self._sync(force=True)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        if self._lock >= 0:
            os.close(self._lock)
            self._lock = -1

    def _load(self) -> None:
        path = os.path.join(self.directory, "collected")
        with contextlib.suppress(FileNotFoundError, ValueError), open(path) as file:
            self._offsets = {str(k): int(v) for k, v in json.load(file).items()}
        self._saved_offsets = dict(self._offsets)
        self._segments = sorted(int(name, 16) for name in os.listdir(self.logdir) if _is_hex(name))
        self.next = 0
        if self._segments:
            last = self._segments[-1]
            records = self._segment_records(last)
            # after the last record's number: a write that failed part-way used numbers its
            # torn records no longer show
            self.next = max(last + len(records), records[-1][0] + 1 if records else last)
            self._in_segment = len(records)
            self._fd = os.open(self._segment_path(last), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)

    # -- merging ---------------------------------------------------------------------------

    async def collect(self) -> int:
        return await asyncio.to_thread(self._collect)

    def _collect(self) -> int:
        """Merges what the inboxes hold into the log; the number of records added."""
        cutoff = time.time_ns()
        ready: list[tuple[int, int, bytes]] = []
        missing = 0
        offsets = dict(self._offsets)
        names = sorted(os.listdir(self.inbox))
        for order, name in enumerate(names):
            path = os.path.join(self.inbox, name)
            offset = offsets.get(name, 0)
            gone = _writer_gone(path)  # before reading: then what is read is all there is
            try:
                with open(path, "rb") as file:
                    size = os.fstat(file.fileno()).st_size
                    file.seek(offset)
                    data = file.read(PROBE)
                    if data[:1] == RS:  # something new: read on
                        data += file.read(INBOX_READ)
            except FileNotFoundError:
                continue
            records, used = _records(data, complete_end=gone)
            if gone and not records and RS not in data:
                used = max(size - offset, 0)  # only the zeros of an unfilled file are left
            definitions = self._defined.get(name)
            if definitions is None:  # a file new to this process (after a restart, part read)
                definitions = self._defined[name] = _definitions(path, offset)
            taken = 0
            for position, body in enumerate(records):
                if body[:1] == DEFINITION:
                    _defined(body, definitions)
                else:
                    fields = body.split(b"\t")
                    stamp = _stamp(fields)
                    if stamp >= cutoff:
                        break
                    if len(fields) == REFERRING_TABS + 1:
                        body = _expanded(fields, definitions)
                    if body:
                        ready.append((stamp, order, body))
                    else:
                        missing += 1
                taken = position + 1
            if taken < len(records):  # stopped at the cutoff: the rest waits for the next round
                used = sum(len(body) + 2 for body in records[:taken])
            offsets[name] = offset + used
        if missing:  # a writer's file damaged past the framing's checks: should not happen
            log.error("notifications: %d events refer to parts of their inbox that are gone",
                      missing)  # fmt: skip
        ready.sort(key=lambda item: (item[0], item[1]))
        if ready:
            self._append([body for _, _, body in ready])
        if offsets != self._offsets:
            self._offsets = offsets
            self._retire()
        self._sync()
        return len(ready)

    def _append(self, bodies: list[bytes]) -> None:
        """Appends the records, numbered from `next` on, to the log's segments. A record's
        number is taken before it is written: a write that fails part-way (a full disk) leaves
        its numbers used, never given again to other records (a reader may have had them)."""
        at = 0
        while at < len(bodies):
            if self._fd < 0 or self._in_segment >= SEGMENT_RECORDS:
                self._new_segment()
            taken = bodies[at : at + SEGMENT_RECORDS - self._in_segment]
            first = self.next
            self.next += len(taken)
            self._in_segment += len(taken)
            at += len(taken)
            self._write([b"\x1e%d\t%b\n" % (first + i, body) for i, body in enumerate(taken)])

    def _write(self, chunk: list[bytes]) -> None:
        if chunk:
            view = memoryview(b"".join(chunk))
            while view:
                view = view[os.write(self._fd, view) :]

    def _new_segment(self) -> None:
        if self._fd >= 0:
            os.fsync(self._fd)
            os.close(self._fd)
        path = self._segment_path(self.next)
        self._fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_TRUNC, 0o600
        )
        self._segments.append(self.next)
        self._in_segment = 0

    def _retire(self) -> None:
        """Removes the inbox files merged to their end whose writer has moved on (a writer
        never goes back to a file it left)."""
        for name in list(self._offsets):
            path = os.path.join(self.inbox, name)
            try:
                size = os.stat(path).st_size
            except FileNotFoundError:
                del self._offsets[name]
                self._defined.pop(name, None)
                continue
            if self._offsets[name] >= size and _writer_gone(path):
                os.unlink(path)
                del self._offsets[name]
                self._defined.pop(name, None)

    def _save_offsets(self) -> None:
        _replace(os.path.join(self.directory, "collected"), json.dumps(self._offsets).encode())

    def _sync(self, force: bool = False) -> None:
        """Syncs the log, then saves how far the inboxes were merged (what the log holds is
        on disk before the inboxes it came from are taken for merged), about once a
        second: a restart after a crash merges again what came after (duplicates, never a
        loss)."""
        now = time.monotonic()
        if not force and now - self._synced < SYNC_INTERVAL:
            return
        self._synced = now
        if self._fd >= 0:
            os.fdatasync(self._fd)
        if self._offsets != self._saved_offsets:
            self._save_offsets()
            self._saved_offsets = dict(self._offsets)

    # -- reading ---------------------------------------------------------------------------

    @property
    def first(self) -> int:
        """The number of the oldest record still in the log."""
        return self._segments[0] if self._segments else self.next

    def _segment_path(self, first: int) -> str:
        return os.path.join(self.logdir, f"{first:016x}")

    def _segment_records(self, first: int) -> list[tuple[int, bytes]]:
        try:
            with open(self._segment_path(first), "rb") as file:
                data = file.read()
        except FileNotFoundError:
            return []
        records, _ = _records(data, complete_end=True)
        found = []
        for body in records:
            number, _, line = body.partition(b"\t")
            with contextlib.suppress(ValueError):
                found.append((int(number), line))
        return found

    async def read(self, reader: Reader, limit: int) -> list[tuple[int, str]]:
        return await asyncio.to_thread(self._read, reader, limit)

    def _read(self, reader: Reader, limit: int) -> list[tuple[int, str]]:
        """Up to `limit` records from the reader's position on, with their numbers."""
        found: list[tuple[int, str]] = []
        while len(found) < limit and reader.next < self.next:
            if reader.next < self.first:  # trimmed meanwhile
                reader.next, reader.segment = self.first, -1
            index = bisect.bisect_right(self._segments, reader.next) - 1
            segment = self._segments[index]
            if reader.segment != segment:
                reader.segment, reader.offset = segment, 0
            # about the `limit` records asked for (a lagging endpoint asks for few at a
            # time), the whole chunk when that holds no record whole
            size = min(READ_CHUNK, (limit - len(found)) * RECORD_GUESS)
            try:
                with open(self._segment_path(segment), "rb") as file:
                    file.seek(reader.offset)
                    data = file.read(size)
                    records, _ = _records(data, complete_end=False)
                    if not records and len(data) == size < READ_CHUNK:
                        data += file.read(READ_CHUNK - size)
                        records, _ = _records(data, complete_end=False)
            except FileNotFoundError:
                records = []
            if not records:
                if index + 1 < len(self._segments):  # this segment is done: the next one
                    reader.next, reader.segment = self._segments[index + 1], -1
                    continue
                break
            for body in records:
                reader.offset += len(body) + 2
                number_text, _, line = body.partition(b"\t")
                with contextlib.suppress(ValueError):
                    number = int(number_text)
                    if number >= reader.next:
                        found.append((number, line.decode("utf-8", "replace")))
                        reader.next = number + 1
                if len(found) >= limit:
                    break
        return found

    async def trim(self, before: int) -> None:
        """Removes the segments whose every record is numbered below `before`."""
        while len(self._segments) > 1 and self._segments[1] <= before:
            first = self._segments.pop(0)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._segment_path(first))

    # -- cursors ---------------------------------------------------------------------------

    def _cursor_path(self, endpoint: str) -> str:
        return os.path.join(self.cursors, hashlib.sha256(endpoint.encode()).hexdigest()[:32])

    async def load_cursor(self, endpoint: str) -> int | None:
        return await asyncio.to_thread(self._load_cursor, endpoint)

    def _load_cursor(self, endpoint: str) -> int | None:
        try:
            with open(self._cursor_path(endpoint)) as file:
                number, _, name = file.read().partition("\t")
            return int(number) if name == endpoint else None
        except (FileNotFoundError, ValueError):
            return None

    async def save_cursor(self, endpoint: str, number: int) -> None:
        _replace(self._cursor_path(endpoint), f"{number}\t{endpoint}".encode())


class Reader:
    """A position in the log for one endpoint: the next record number it wants, and where in
    which segment the last read left off."""

    def __init__(self, number: int) -> None:
        self.next = number
        self.segment = -1
        self.offset = 0


def _definitions(path: str, end: int) -> dict[bytes, bytes]:
    """The definitions in the inbox file's first `end` bytes (what was merged of it)."""
    found: dict[bytes, bytes] = {}
    if end:
        with contextlib.suppress(FileNotFoundError), open(path, "rb") as file:
            records, _ = _records(file.read(end), complete_end=True)
            for body in records:
                _defined(body, found)
    return found


def _defined(body: bytes, definitions: dict[bytes, bytes]) -> bool:
    """Whether the record is a definition; if so, what it defines is added to `definitions`."""
    if body[:1] != DEFINITION:
        return False
    number, _, part = body[1:].partition(b"\t")
    definitions[number] = part
    return True


def _expanded(fields: list[bytes], definitions: dict[bytes, bytes]) -> bytes:
    """The whole record a record referring to definitions (split at its tabs) stands for (b""
    when one of them is missing): events.Records.make's line."""
    _, stamp, target, request_id, method, client = fields
    whole_target = definitions.get(target)
    whole_client = definitions.get(client)
    if whole_target is None or whole_client is None:
        return b""
    return b"\t".join((b"", stamp, whole_target, request_id, method, whole_client))


def _stamp(fields: list[bytes]) -> int:
    """The time of an event's record (split at its tabs; whole or referring alike); 0 when
    it has none."""
    try:
        return int(fields[events.STAMP])
    except (ValueError, IndexError):
        return 0


def _is_hex(name: str) -> bool:
    return len(name) == 16 and all(c in "0123456789abcdef" for c in name)


def _replace(path: str, content: bytes) -> None:
    """Writes a small file whole, in place of the old one."""
    temporary = f"{path}.tmp"
    with open(temporary, "wb") as file:
        file.write(content)
    os.replace(temporary, path)
