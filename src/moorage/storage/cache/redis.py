"""The Redis blob descriptor cache, shared by every replica using the same Redis.

Redis being down never stops pulls: look-ups are misses (storage answers), writes are skipped,
and it is logged once; a background task retries every second, and once Redis answers it
empties moorage's keys before the cache is used again. Deletes are refused while Redis cannot
be reached (`forget` raises CacheUnavailable): a delete whose entry stayed in Redis could be
reported present by another replica after Redis returns with its data.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from moorage.config.schema import Redis as RedisSettings
from moorage.durations import seconds
from moorage.registry.digest import Digest
from moorage.storage.cache.base import CachedBlob, CacheUnavailable, register

log = logging.getLogger("moorage.cache.redis")

NAME = "redis"
PREFIX = "moorage:blob:"
RETRY_EVERY = 1.0


def _key(scope: str | None, digest: Digest) -> str:
    return f"{PREFIX}{scope or ''}@{digest}"


def connect(settings: RedisSettings) -> aioredis.Redis:
    """A client for the `redis` section, in distribution's v2 shape (`addr`, `pool`, TLS when
    `tls.enabled`) or v3 shape (one of `addrs`, `username`, TLS when a client certificate is
    given)."""
    addresses = settings.addrs or ([settings.addr] if settings.addr else [])
    if not addresses:
        raise ValueError("redis.addr: required when a redis cache is configured")
    host, _, port = addresses[0].rpartition(":")
    connect_timeout = seconds(settings.dialtimeout) or 5.0
    kwargs: dict[str, Any] = {
        "host": host or "localhost",
        "port": int(port or 6379),
        "db": settings.db,
        "username": settings.username or None,
        "password": settings.password or None,
        "socket_connect_timeout": connect_timeout,
        "socket_timeout": seconds(settings.readtimeout) or connect_timeout,
        "max_connections": settings.pool.maxactive or settings.poolsize or None,
        "client_name": settings.clientname or None,
    }
    if settings.tls.enabled or settings.tls.certificate or settings.tls.key:
        kwargs["ssl"] = True
        kwargs["ssl_certfile"] = settings.tls.certificate or None
        kwargs["ssl_keyfile"] = settings.tls.key or None
        kwargs["ssl_ca_certs"] = settings.tls.clientcas[0] if settings.tls.clientcas else None
        kwargs["ssl_cert_reqs"] = ssl.CERT_REQUIRED
    return aioredis.Redis(**kwargs)


class RedisCache:
    name = NAME

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client
        self._recovery: asyncio.Task[None] | None = None

    @property
    def up(self) -> bool:
        return self._recovery is None

    def _failed(self, exc: Exception) -> None:
        if self._recovery is None:
            log.error("redis unavailable, serving from storage until it returns: %s", exc)
            self._recovery = asyncio.get_running_loop().create_task(self._recover())

    async def _recover(self) -> None:
        started = time.monotonic()
        while True:
            await asyncio.sleep(RETRY_EVERY)
            try:
                await self.flush()
            except (RedisError, OSError):
                continue
            log.info("redis available again after %.0fs", time.monotonic() - started)
            self._recovery = None
            return

    async def flush(self) -> None:
        """Deletes every key of this cache."""
        batch: list[Any] = []
        async for key in self.client.scan_iter(match=PREFIX + "*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await self.client.delete(*batch)
                batch.clear()
        if batch:
            await self.client.delete(*batch)

    async def close(self) -> None:
        if self._recovery is not None:
            self._recovery.cancel()
            self._recovery = None
        await self.client.aclose()

    async def get(self, scope: str | None, digest: Digest) -> CachedBlob | None:
        if not self.up:
            return None
        try:
            value = await self.client.get(_key(scope, digest))
        except (RedisError, OSError) as exc:
            self._failed(exc)
            return None
        if value is None:
            return None
        text = value.decode() if isinstance(value, bytes) else str(value)
        stored, _, size = text.partition(" ")
        parsed = Digest.parse_or_none(stored)
        return CachedBlob(parsed, int(size)) if parsed and size.isdigit() else None

    async def set(self, scope: str | None, digest: Digest, blob: CachedBlob) -> None:
        if not self.up:
            return
        try:
            await self.client.set(_key(scope, digest), f"{blob.stored} {blob.size}")
        except (RedisError, OSError) as exc:
            self._failed(exc)

    async def forget(self, scope: str | None, digest: Digest) -> None:
        if not self.up:
            raise CacheUnavailable("redis is unavailable")
        try:
            await self.client.delete(_key(scope, digest))
        except (RedisError, OSError) as exc:
            self._failed(exc)
            raise CacheUnavailable(f"redis is unavailable: {exc}") from exc


def create(options: dict[str, Any]) -> RedisCache:
    settings = options.get("redis")
    if not isinstance(settings, RedisSettings):
        raise ValueError("the redis cache needs the redis section")
    return RedisCache(connect(settings))


register(NAME, create)


class RedisNames:
    """The catalog's repository names, shared by replicas: one Redis sorted set, and a version
    counter bumped whenever a name comes or goes, so a replica refetches only after a change."""

    KEY = "moorage:catalog"
    VERSION = "moorage:catalog:version"

    def __init__(self, client: aioredis.Redis) -> None:
        self.client = client

    async def add(self, names: list[str]) -> None:
        added = 0
        for start in range(0, len(names), 1000):
            batch = dict.fromkeys(names[start : start + 1000], 0)
            added += int(await self.client.zadd(self.KEY, batch) or 0)
        if added:
            await self.client.incr(self.VERSION)

    async def remove(self, names: list[str]) -> None:
        if names and int(await self.client.zrem(self.KEY, *names) or 0):
            await self.client.incr(self.VERSION)

    async def version(self) -> int:
        value = await self.client.get(self.VERSION)
        return int(value or 0)

    async def all(self) -> list[str]:
        raw = await self.client.zrange(self.KEY, 0, -1)
        return [item.decode() if isinstance(item, bytes) else str(item) for item in raw]
