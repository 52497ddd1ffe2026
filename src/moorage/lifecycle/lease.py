"""One garbage collection at a time on a storage root, across the workers of a server, its
replicas and `moorage garbage-collect`.

With a `redis` section, the lease is a Redis key named after the root, taken only if free and
kept alive while the collection runs: whoever loses it (Redis unreachable past its expiry) stops
deleting. Without one, on a filesystem root, it is a lock on a file in the root (`_gc/lock`),
which the kernel releases when its holder dies. On any other root without Redis (S3 with no
Redis configured) it holds only within this process: collections of separate processes may
overlap, which is safe (each follows moorage.registry.sweeps) but wasteful.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import socket
import uuid
from typing import Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from moorage.config.schema import Config
from moorage.storage import paths
from moorage.storage.cache.redis import connect
from moorage.storage.driver import StorageDriver

log = logging.getLogger("moorage.gc")

TTL = 60.0  # seconds a Redis lease lives unless renewed; it is renewed every TTL/4
_RENEW = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"""
_RELEASE = """if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1]) else return 0 end"""


def holder() -> str:
    """Who takes a lease, as others are told."""
    return f"{socket.gethostname()} pid {os.getpid()}"


class Lease(Protocol):
    async def acquire(self) -> str | None:
        """Takes the lease: None when taken, else who holds it."""
        ...

    def held(self) -> bool:
        """Whether it is still held (it can be lost, not only released)."""
        ...

    async def release(self) -> None: ...


class FileLease:
    """An exclusive lock on a file of a filesystem root."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None

    async def acquire(self) -> str | None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 200).decode("utf-8", "replace").strip() or "another process"
            os.close(fd)
            return other
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{holder()}\n".encode(), 0)
        self._fd = fd
        return None

    def held(self) -> bool:
        return self._fd is not None

    async def release(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)  # which unlocks


class RedisLease:
    """A Redis key, set only when free, with an expiry a background task keeps pushing back."""

    def __init__(self, client: aioredis.Redis, key: str) -> None:
        self.client = client
        self.key = key
        self._token = ""
        self._renewal: asyncio.Task[None] | None = None

    async def acquire(self) -> str | None:
        token = json.dumps({"holder": holder(), "id": uuid.uuid4().hex})
        if await self.client.set(self.key, token, nx=True, px=int(TTL * 1000)):
            self._token = token
            self._renewal = asyncio.create_task(self._renew())
            return None
        current = await self.client.get(self.key)
        with contextlib.suppress(ValueError, TypeError, KeyError):
            return str(json.loads(current or b"")["holder"])
        return "another process"

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(TTL / 4)
            try:
                kept = await self.client.eval(_RENEW, 1, self.key, self._token, int(TTL * 1000))
            except (RedisError, OSError) as exc:
                log.warning("garbage collection lease: redis unavailable (%s)", exc)
                continue  # lost only once it has expired
            if not kept:
                log.error("garbage collection lease on %s lost", self.key)
                self._token = ""
                return

    def held(self) -> bool:
        return bool(self._token)

    async def release(self) -> None:
        if self._renewal is not None:
            self._renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewal
            self._renewal = None
        if self._token:
            token, self._token = self._token, ""
            with contextlib.suppress(RedisError, OSError):
                await self.client.eval(_RELEASE, 1, self.key, token)


_LOCAL: set[str] = set()  # roots whose lease this process holds (LocalLease)


class LocalLease:
    """Within this process only: for roots with neither Redis nor a local file."""

    def __init__(self, root: str) -> None:
        self.root = root
        self._held = False

    async def acquire(self) -> str | None:
        if self.root in _LOCAL:
            return "this process"
        _LOCAL.add(self.root)
        self._held = True
        return None

    def held(self) -> bool:
        return self._held

    async def release(self) -> None:
        if self._held:
            self._held = False
            _LOCAL.discard(self.root)


def root_id(driver_name: str, parameters: dict[str, Any]) -> str:
    """A name for the storage root a config points at, the same in every process using it."""
    if driver_name == "filesystem":
        where: Any = os.path.abspath(str(parameters.get("rootdirectory", "")))
    else:
        keys = ("regionendpoint", "region", "bucket", "rootdirectory")
        where = {key: str(parameters.get(key, "")) for key in keys}
    text = json.dumps([driver_name, where], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def create(driver: StorageDriver, root: str, redis_client: aioredis.Redis | None) -> Lease:
    """The lease for the root named `root` (root_id) on `driver`."""
    if redis_client is not None:
        return RedisLease(redis_client, f"moorage:gc:lease:{root}")
    local = driver.local_file(paths.GC_LOCK)
    if local is not None:
        return FileLease(local)
    return LocalLease(root)


def from_config(config: Config, driver: StorageDriver) -> tuple[Lease, aioredis.Redis | None]:
    """The lease for the root `config` names, and the Redis client it uses (to close)."""
    redis = config.redis
    client = connect(redis) if redis.addr or redis.addrs else None
    root = root_id(config.storage.driver, config.storage.parameters)
    return create(driver, root, client), client
