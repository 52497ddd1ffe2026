"""Delivery: the spool's records POSTed to each endpoint, in order per repository, at least once.

Each endpoint reads the log from its cursor. Its records go into one lane per repository; a
lane sends its oldest events (up to BATCH in one envelope, oldest first) and, on success, the
next ones; lanes of different repositories go side by side (up to IN_FLIGHT requests), so an
event one repository's receiver keeps refusing holds up that repository only, until the
window of records read past the cursor is full. The cursor moves over every record delivered
(or ignored, or dropped) without a gap and is saved now and then: after a restart, delivery
resumes there, and what was delivered past it is delivered again.

Failures follow distribution's breaker: after `threshold` failures in a row the endpoint waits
`backoff` between attempts (one at a time) until one succeeds. A request that gets no answer
within `timeout`, or answers other than 2xx or 3xx, has failed. The log says when an endpoint
starts failing and when it delivers again.

Records an endpoint holds more than `maxevents` of, the oldest go (counted as dropped, with one
log line when it starts dropping).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import aiohttp
from multidict import CIMultiDict

from moorage.notifications import events
from moorage.notifications.listener import Filter
from moorage.notifications.spool import Reader

log = logging.getLogger("moorage.notifications")

BATCH = 100  # events in one envelope at most
IN_FLIGHT = 4  # requests one endpoint has going at once at most
WINDOW = 20_000  # records read past the cursor at most
TICK = 0.05  # seconds between rounds when there is nothing to do
# Seconds between rounds while events flow: a round's cost (the merge, a read per endpoint) is
# then shared by the events of this long, not paid for every few.
BUSY_TICK = 0.02
SAVE_INTERVAL = 0.5  # seconds between saves of a cursor that moved


class Log(Protocol):
    """A spool as the deliverer sees it: numbered records from `first` to `next` (excluded),
    and a cursor per endpoint (moorage.notifications.spool.FileLog, .redis.RedisLog)."""

    directory: str
    next: int

    @property
    def first(self) -> int: ...

    async def lock(self) -> bool: ...

    async def keep(self) -> bool: ...

    async def collect(self) -> int: ...

    async def read(self, reader: Reader, limit: int) -> list[tuple[int, str]]: ...

    async def trim(self, before: int) -> None: ...

    async def load_cursor(self, endpoint: str) -> int | None: ...

    async def save_cursor(self, endpoint: str, number: int) -> None: ...

    async def close(self) -> None: ...


class DeliveryMetrics(Protocol):
    def sent(self, endpoint: str, count: int, latencies: list[float]) -> None: ...

    def failed(self, endpoint: str, count: int) -> None: ...

    def dropped(self, endpoint: str, count: int) -> None: ...

    def pending(self, endpoint: str, count: int) -> None: ...


@dataclass(frozen=True)
class EndpointSettings:
    name: str
    url: str
    headers: dict[str, list[str]]
    timeout: float
    threshold: int
    backoff: float
    filter: Filter


class Expansions:
    """The JSON of the events being sent, made once for all endpoints (which send the same
    records at about the same time); a bounded memory of the latest. An event's JSON is made
    when it is about to be sent, not when its record is read: under load delivery lags (it
    runs on the CPU the workers leave), and the work it puts off until then is work that
    takes nothing from requests meanwhile."""

    def __init__(self, size: int = WINDOW) -> None:
        self.size = size
        self._found: collections.OrderedDict[int, str] = collections.OrderedDict()

    def json(self, number: int, line: str) -> str:
        """The event of record `number` (a record parse() took), as JSON."""
        found = self._found.get(number)
        if found is None:
            fields = events.parse(line)
            assert fields is not None, number  # Delivery._take left out what is no record
            found = self._found[number] = events.encode(events.expand(fields))
            if len(self._found) > self.size:
                self._found.popitem(last=False)
        return found


@dataclass
class Lane:
    events: collections.deque[tuple[int, int, str]]  # (record number, stamp, record)
    busy: bool = False


class Delivery:
    """What one endpoint has yet to get, and the requests that give it."""

    def __init__(
        self,
        settings: EndpointSettings,
        spool: Log,
        metrics: DeliveryMetrics,
        max_events: int,
        session: Callable[[], aiohttp.ClientSession],
        expanded: Expansions | None = None,
    ) -> None:
        self.settings = settings
        self.expanded = expanded or Expansions()
        self.spool = spool
        self.metrics = metrics
        self.max_events = max_events
        self.session = session
        self.cursor = 0
        self.saved: int | None = None
        self.reader = Reader(0)
        self.window: collections.deque[int] = collections.deque()  # numbers read, in order
        self.done: set[int] = set()
        self.lanes: dict[str, Lane] = {}
        self.requests: set[asyncio.Task[None]] = set()
        self.failures = 0  # in a row
        self.failing_since: float | None = None
        self.retry_at = 0.0
        self.dropping = False
        self.last_save = 0.0
        headers: CIMultiDict[str] = CIMultiDict()
        for name, values in settings.headers.items():
            for value in values:
                headers.add(name, value)
        headers["Content-Type"] = events.EVENTS_MEDIA_TYPE
        self.headers = headers

    async def start(self) -> None:
        """Resumes where the endpoint's saved cursor says; a new endpoint starts with what
        comes next."""
        self.saved = await self.spool.load_cursor(self.settings.name)
        self.cursor = self.spool.next if self.saved is None else self.saved
        self.reader = Reader(self.cursor)

    @property
    def pending(self) -> int:
        return self.spool.next - self.cursor

    async def pump(self) -> None:
        """Reads what is new, drops what exceeds the bound, and starts the requests due."""
        self._bound()
        room = WINDOW - len(self.window)
        if room > 0:
            for number, line in await self.spool.read(self.reader, room):
                self._take(number, line)
        self._advance()
        self._send()
        self.metrics.pending(self.settings.name, self.pending)

    def _take(self, number: int, line: str) -> None:
        self.window.append(number)
        fields = events.parse(line)
        if fields is None or not self.settings.filter.wants(
            fields[events.ACTION], fields[events.MEDIA_TYPE]
        ):
            self.done.add(number)  # not a record (torn), or one this endpoint ignores
            return
        repository = fields[events.REPOSITORY]
        lane = self.lanes.get(repository)
        if lane is None:
            lane = self.lanes[repository] = Lane(collections.deque())
        lane.events.append((number, fields[events.STAMP], line))

    def _bound(self) -> None:
        """Drops the oldest records beyond `max_events`, and those the spool no longer has
        (a Redis stream trims itself)."""
        keep_from = max(self.spool.next - self.max_events, self.spool.first)
        excess = keep_from - self.cursor
        if excess <= 0:
            if self.dropping and self.pending <= self.max_events // 2:
                self.dropping = False
            return
        if not self.dropping:
            log.warning(
                "notifications: endpoint %s has more than %d events waiting; dropping the "
                "oldest (notifications.spool.maxevents)",
                self.settings.name,
                self.max_events,
            )
            self.dropping = True
        while self.window and self.window[0] < keep_from:
            self.done.discard(self.window.popleft())
        in_flight = 0  # a lane's request under way decides its events' fate (_forget_dropped)
        for lane in self.lanes.values():
            if lane.busy:
                in_flight += sum(1 for number, _, _ in lane.events if number < keep_from)
                continue
            while lane.events and lane.events[0][0] < keep_from:
                lane.events.popleft()
        self.metrics.dropped(self.settings.name, excess - in_flight)
        self.reader.next = max(self.reader.next, keep_from)
        self.cursor = keep_from

    def _forget_dropped(self, lane: Lane) -> None:
        """After a lane's request: its events the bound dropped while it was under way (they
        are behind the cursor) are dropped now, unless the request delivered them."""
        dropped = 0
        while lane.events and lane.events[0][0] < self.cursor:
            lane.events.popleft()
            dropped += 1
        if dropped:
            self.metrics.dropped(self.settings.name, dropped)

    def _advance(self) -> None:
        while self.window and self.window[0] in self.done:
            self.done.discard(self.window.popleft())
        self.cursor = self.window[0] if self.window else max(self.cursor, self.reader.next)
        for name in [name for name, lane in self.lanes.items() if not lane.events]:
            del self.lanes[name]

    async def save(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.cursor != self.saved and (force or now - self.last_save >= SAVE_INTERVAL):
            await self.spool.save_cursor(self.settings.name, self.cursor)
            self.saved, self.last_save = self.cursor, now

    def _send(self) -> None:
        now = time.monotonic()
        failing = self.failures >= self.settings.threshold
        if failing and (self.requests or now < self.retry_at):
            return  # the breaker is open: one attempt at a time, `backoff` apart
        limit = 1 if failing else IN_FLIGHT
        for lane in self.lanes.values():
            if len(self.requests) >= limit:
                break
            if lane.busy or not lane.events:
                continue
            batch = [lane.events[i] for i in range(min(BATCH, len(lane.events)))]
            lane.busy = True
            task = asyncio.create_task(self._post(lane, batch))
            self.requests.add(task)
            task.add_done_callback(self.requests.discard)

    async def _post(self, lane: Lane, batch: list[tuple[int, int, str]]) -> None:
        name = self.settings.name
        body = events.envelope([self.expanded.json(number, line) for number, _, line in batch])
        problem = ""
        try:
            async with self.session().post(
                self.settings.url,
                data=body,
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                allow_redirects=False,
            ) as response:
                await response.read()
                if not 200 <= response.status < 400:
                    problem = f"answered {response.status}"
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            problem = str(exc) or type(exc).__name__
        finally:
            lane.busy = False
        if problem:
            self._failed(len(batch), problem)
            self._forget_dropped(lane)
            return
        now = time.time_ns()
        for _ in batch:
            number, _, _ = lane.events.popleft() if lane.events else (-1, 0, "")
            if self.window and number >= self.window[0]:  # not dropped meanwhile
                self.done.add(number)
        self._forget_dropped(lane)
        self.metrics.sent(name, len(batch), [(now - stamp) / 1e9 for _, stamp, _ in batch])
        if self.failing_since is not None:
            log.info(
                "notifications: endpoint %s delivers again (it failed for %.1fs)",
                name,
                time.monotonic() - self.failing_since,
            )
            self.failing_since = None
        self.failures = 0

    def _failed(self, count: int, problem: str) -> None:
        self.metrics.failed(self.settings.name, count)
        self.failures += 1
        if self.failures >= self.settings.threshold:
            self.retry_at = time.monotonic() + self.settings.backoff
            if self.failing_since is None:
                self.failing_since = time.monotonic()
                log.warning(
                    "notifications: endpoint %s is failing (%s); retrying every %gs, "
                    "%d events waiting",
                    self.settings.name,
                    problem,
                    self.settings.backoff,
                    self.pending,
                )

    async def settle(self, within: float) -> None:
        """Waits up to `within` seconds for the requests under way."""
        if self.requests:
            await asyncio.wait(set(self.requests), timeout=within)


class Notifier:
    """The delivering half: merges the spool and delivers to every endpoint, in one process
    per spool (the others wait for its lock, or a Redis spool's lease)."""

    def __init__(
        self,
        spool: Log,
        endpoints: list[EndpointSettings],
        metrics: DeliveryMetrics,
        max_events: int,
    ) -> None:
        self.spool = spool
        self.endpoints = endpoints
        self.metrics = metrics
        self.max_events = max_events
        self._session: aiohttp.ClientSession | None = None
        self.deliveries: list[Delivery] = []

    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit_per_host=IN_FLIGHT)
            )
        return self._session

    async def run(self, stop: asyncio.Event) -> None:
        """Delivers while this process has the spool, until `stop` is set; then saves where
        every endpoint is."""
        try:
            while not stop.is_set():
                if not await self._own():
                    await _pause(stop, 1.0)
                    continue
                expansions = Expansions()
                self.deliveries = [
                    Delivery(
                        settings,
                        self.spool,
                        self.metrics,
                        self.max_events,
                        self.session,
                        expansions,
                    )
                    for settings in self.endpoints
                ]
                for delivery in self.deliveries:
                    await delivery.start()
                while not stop.is_set() and await self.spool.keep():
                    await _pause(stop, BUSY_TICK if await self.round() else TICK)
                await self._let_go()
        finally:
            await self._let_go()
            if self._session is not None:
                await self._session.close()
            with contextlib.suppress(Exception):
                await self.spool.close()

    async def _own(self) -> bool:
        try:
            return await self.spool.lock()
        except Exception as exc:
            log.error("notifications: cannot use the spool %s: %s", self.spool.directory, exc)
            return False

    async def round(self) -> bool:
        """One round of merging and delivering; whether there was anything to do."""
        try:
            added = await self.spool.collect()
            for delivery in self.deliveries:
                await delivery.pump()
                await delivery.save()
            if self.deliveries:
                await self.spool.trim(min(delivery.cursor for delivery in self.deliveries))
        except Exception as exc:  # the disk, or Redis: try again in a moment
            log.error("notifications: the spool %s failed: %s", self.spool.directory, exc)
            return False
        return added > 0

    async def _let_go(self) -> None:
        """Waits briefly for the requests under way and saves every endpoint's cursor."""
        deliveries, self.deliveries = self.deliveries, []
        for delivery in deliveries:
            await delivery.settle(min(delivery.settings.timeout, 2.0))
            delivery._advance()
            with contextlib.suppress(Exception):
                await delivery.save(force=True)
            for task in list(delivery.requests):
                task.cancel()


async def _pause(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
