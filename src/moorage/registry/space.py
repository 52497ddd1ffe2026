"""The registry's operations that write: where the driver finds no space left (StorageFull),
the domain answers InsufficientStorage."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from moorage.registry.errors import InsufficientStorage
from moorage.storage.driver import StorageFull

log = logging.getLogger("moorage.registry")

P = ParamSpec("P")
T = TypeVar("T")


def needs_space(operation: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(operation)
    async def writing(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await operation(*args, **kwargs)
        except StorageFull as exc:
            log.error("storage full: %s", exc)
            raise InsufficientStorage() from exc

    return writing
