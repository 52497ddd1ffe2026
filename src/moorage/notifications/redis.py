"""The spool in Redis, for replicas: one stream every replica appends to and any replica can
deliver from, one at a time.

    moorage:notifications:events     a stream of records, entry id `<number>-0`, at most
                                     `maxevents` long (the oldest go first)
    moorage:notifications:sequence   the last record number given
    moorage:notifications:cursors    a hash: endpoint -> the number of the first record it has
                                     not had
    moorage:notifications:deliverer  the lease of the replica that delivers (renewed while it
                                     lives; another replica takes over when it lapses)

A request's records are appended before it is answered; the appends of requests that finish in
the same turn of the event loop go in one round trip. Records are numbered and appended by one
script, atomically, so the stream's order is the order in which Redis received them: a record a
client was answered after comes before any record that client caused next, whichever replica
served it. Durability is Redis's: with `appendonly yes` (and its fsync policy) events survive a
restart of Redis too; moorage can be killed at any time.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from typing import Any

import redis.asyncio as aioredis

from moorage.notifications.spool import Reader

log = logging.getLogger("moorage.notifications")

STREAM = "moorage:notifications:events"
SEQUENCE = "moorage:notifications:sequence"
CURSORS = "moorage:notifications:cursors"
LEASE = "moorage:notifications:deliverer"
LEASE_SECONDS = 10.0
RENEW_SECONDS = 2.0

# KEYS: stream, sequence; ARGV: the stream's bound, then the records.
_APPEND = """
local number = 0
for i = 2, #ARGV do
  number = redis.call('INCR', KEYS[2])
  redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], number .. '-0', 'r', ARGV[i])
end
return number
"""
# KEYS: lease; ARGV: this replica's id, milliseconds.
_KEEP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class RedisWriter:
    """Appends records to the stream; the requests of one turn of the event loop share one
    round trip."""

    def __init__(self, client: aioredis.Redis, max_events: int) -> None:
        self.client = client
        self.max_events = max_events
        self._pending: list[str] = []
        self._flushed: asyncio.Future[None] | None = None
        self._flushing: set[asyncio.Future[None]] = set()

    async def append(self, lines: list[str]) -> None:
        self._pending += lines
        if self._flushed is None:
            loop = asyncio.get_running_loop()
            self._flushed = loop.create_future()
            loop.call_soon(self._start_flush)  # after the other requests of this turn
        await asyncio.shield(self._flushed)

    def _start_flush(self) -> None:
        task = asyncio.ensure_future(self._flush())
        self._flushing.add(task)  # held until done: a task nobody holds may be collected
        task.add_done_callback(self._flushing.discard)

    async def _flush(self) -> None:
        lines, self._pending = self._pending, []
        flushed, self._flushed = self._flushed, None
        assert flushed is not None
        try:
            await self.client.eval(_APPEND, 2, STREAM, SEQUENCE, self.max_events, *lines)
        except Exception as exc:
            flushed.set_exception(exc)
        else:
            flushed.set_result(None)

    def close(self) -> None:
        """Nothing to release: the client's connections go with the process."""


class RedisLog:
    """The delivering side: reads the stream, keeps the cursors and the lease."""

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self.directory = "redis"  # what log lines name
        self.identity = secrets.token_hex(8)
        self.next = 0
        self._first = 0
        self._renewed = 0.0
        self._held = False

    @property
    def first(self) -> int:
        return self._first

    async def lock(self) -> bool:
        self._held = bool(
            await self.client.eval(_KEEP, 1, LEASE, self.identity, int(LEASE_SECONDS * 1000))
        )
        self._renewed = time.monotonic()
        if self._held:
            await self.collect()
        return self._held

    async def keep(self) -> bool:
        """Renews the lease now and then; False once it is lost (another replica delivers)."""
        if time.monotonic() - self._renewed >= RENEW_SECONDS:
            try:
                await self.lock()
            except Exception as exc:
                log.error("notifications: redis is unavailable (%s); delivery pauses", exc)
                self._held = False
        return self._held

    async def collect(self) -> int:
        """Learns how far the stream goes; the number of records new since last time."""
        before = self.next
        pipe = self.client.pipeline(transaction=False)
        pipe.get(SEQUENCE)
        pipe.xrange(STREAM, "-", "+", count=1)
        sequence, oldest = await pipe.execute()
        self.next = int(sequence or 0) + 1
        self._first = _number(oldest[0][0]) if oldest else self.next
        return max(self.next - before, 0) if before else 0

    async def read(self, reader: Reader, limit: int) -> list[tuple[int, str]]:
        if reader.next < self.first:
            reader.next = self.first
        entries: Any = await self.client.xrange(STREAM, f"{reader.next}-0", "+", count=limit)
        found = []
        for entry_id, fields in entries or []:
            number = _number(entry_id)
            line = (fields or {}).get(b"r", b"")
            text = line.decode("utf-8", "replace") if isinstance(line, bytes) else str(line)
            found.append((number, text))
            reader.next = number + 1
        return found

    async def trim(self, before: int) -> None:
        if before > self.first:
            await self.client.xtrim(STREAM, minid=f"{before}-0")

    async def load_cursor(self, endpoint: str) -> int | None:
        value: Any = await self.client.hget(CURSORS, endpoint)
        return int(value) if value is not None else None

    async def save_cursor(self, endpoint: str, number: int) -> None:
        await self.client.hset(CURSORS, endpoint, str(number))

    async def close(self) -> None:
        try:
            if self._held:
                await self.client.eval(_RELEASE, 1, LEASE, self.identity)
        finally:
            await self.client.aclose()


def _number(entry_id: Any) -> int:
    text = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return int(text.partition("-")[0])
