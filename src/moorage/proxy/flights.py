"""One call at a time per key: callers that come while it runs wait for it and share its result
or its error (a manifest fetched once for every client pulling a new tag at once)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class Flights(Generic[V]):
    def __init__(self) -> None:
        self._running: dict[Hashable, asyncio.Task[V]] = {}

    async def run(self, key: Hashable, call: Callable[[], Awaitable[V]]) -> V:
        """The result of `call()`, or of the call already running under `key`. The call runs
        on a task of its own: a caller that goes away does not cancel it for the others."""
        task = self._running.get(key)
        if task is None:
            task = self._running[key] = asyncio.ensure_future(call())
            task.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(task)

    def _finished(self, key: Hashable, task: asyncio.Task[V]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved: every caller raises it itself

    async def close(self) -> None:
        for task in list(self._running.values()):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
