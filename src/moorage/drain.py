"""Requests in flight, for the drain on SIGTERM.

aiohttp's own graceful shutdown (`AppRunner.cleanup`) marks every connection closing first, and a
closing connection drops whatever the client sends next: an upload whose body is still arriving
can then never finish. So the drain waits for requests here, with every connection still
reading, and only then hands over to `cleanup`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class InFlight:
    """Tracks the task of each request being handled, until its response has been sent (the
    task aiohttp runs a request in ends after the body is written)."""

    def __init__(self) -> None:
        self.tasks: set[asyncio.Task[object]] = set()
        self.draining = False

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        task = asyncio.current_task()
        if task is not None and task not in self.tasks:
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        response = await handler(request)
        if self.draining:
            response.force_close()  # no keep-alive: the client moves on to another server
        return response

    async def drain(self, within: float) -> bool:
        """Waits up to `within` seconds for the requests in flight, including any that arrive
        meanwhile on open keep-alive connections; True when none is left."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while self.tasks:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            await asyncio.wait(set(self.tasks), timeout=remaining)
        return True
