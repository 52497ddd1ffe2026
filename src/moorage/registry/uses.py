"""Reads that may lead to a claim, recorded for garbage collection off the request path.

A client that finds a blob with a HEAD skips its upload and names it in the manifest it pushes
next; one that fetches a manifest by digest may name it in an index. Such a read renews the
content's modification time (moorage.registry.sweeps), so that a collection keeps it for the
push to come. The touch is done by a background task, never in the request, at most once per
digest per `every` seconds in this process, and dropped when the task falls behind: a pull never
waits on a storage write, and a missed touch only makes the push that follows more likely to
need a retry, never unsafe (its own claim is what protects it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

from moorage.registry.digest import Digest

log = logging.getLogger("moorage.uses")

QUEUE = 1000  # touches waiting; beyond, new ones are dropped
REMEMBERED = 100_000  # digests whose last touch this process remembers


class Uses:
    def __init__(self, touch: Callable[[Digest], Awaitable[object]], every: float) -> None:
        """`touch(digest)` renews the content's time unless it is recent."""
        self._touch = touch
        self.every = every
        self._last: OrderedDict[Digest, float] = OrderedDict()
        self._queue: asyncio.Queue[Digest] | None = None
        self._task: asyncio.Task[None] | None = None

    def note(self, digest: Digest) -> None:
        """Records a read of the content under `digest`: returns at once."""
        now = time.monotonic()
        last = self._last.get(digest)
        if last is not None and now - last < self.every:
            return
        self._last[digest] = now
        self._last.move_to_end(digest)
        if len(self._last) > REMEMBERED:
            self._last.popitem(last=False)
        if self._queue is None:
            self._queue = asyncio.Queue(QUEUE)
            self._task = asyncio.get_running_loop().create_task(self._run(self._queue))
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(digest)

    def touched(self, digest: Digest) -> None:
        """Records that a writer just touched the content itself."""
        self._last[digest] = time.monotonic()
        self._last.move_to_end(digest)

    async def _run(self, queue: asyncio.Queue[Digest]) -> None:
        while True:
            digest = await queue.get()
            try:
                await self._touch(digest)
            except Exception as exc:  # content gone, storage down: the next read tries again
                log.debug("recording a use of %s failed: %s", digest, exc)
                self._last.pop(digest, None)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task, self._queue = None, None
