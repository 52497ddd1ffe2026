"""What the object-store drivers (S3, GCS, Azure) share: distribution's paths as keys below a
root directory, and one client per event loop."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

T = TypeVar("T")


def object_key(root: str, path: str) -> str:
    """The key of a path (`/docker/registry/v2/...`) below `root` (no slash at either end;
    "" for the top of the bucket or container)."""
    return f"{root}{path}" if root else path.lstrip("/")


def object_path(root: str, key: str) -> str:
    """The path of a key object_key made."""
    return key[len(root) :] if root else "/" + key


class PerLoop(Generic[T]):
    """A client for each event loop, made on first use (aiohttp sessions belong to the loop
    that made them); concurrent first uses share one making."""

    def __init__(self, make: Callable[[], Coroutine[Any, Any, T]]) -> None:
        self._make = make
        self._tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[T]] = {}

    async def get(self) -> T:
        loop = asyncio.get_running_loop()
        task = self._tasks.get(loop)
        if task is None:
            task = self._tasks[loop] = loop.create_task(self._make())
        return await task

    async def pop(self) -> T | None:
        """The running loop's client, forgotten here (for its owner to close); None when none
        was made."""
        task = self._tasks.pop(asyncio.get_running_loop(), None)
        return None if task is None else await task
