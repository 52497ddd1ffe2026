"""What a pull-through cache fetched, and its expiry.

Each blob or manifest fetched into a repository gets a record (moorage.storage.paths:
`_proxy/<alg>/<hex>/fetched`, beside distribution's files, which are left as distribution
writes them). Once a record is older than its upstream's ttl, the repository's links to what
it names are removed: the manifest with its tags and its entry in the referrers index, or the
blob's layer link. What distribution's own pull-through cache fetched (listed in its schedule
file) is recorded when the server starts, and expires the same way. Content itself is never
deleted here, so a blob another repository links stays served (distribution's proxy deletes
shared blobs with the expired ones): the garbage collection removes content no repository
links any more.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time

from moorage.proxy.routes import Routes
from moorage.registry.digest import Digest
from moorage.registry.errors import BlobUnknown, ManifestUnknown, NameInvalid, RegistryError
from moorage.registry.repository import Registry, Repository
from moorage.storage import paths
from moorage.storage.driver import PathNotFound, StorageDriver, StorageError

log = logging.getLogger("moorage.proxy")

MIN_INTERVAL = 1.0  # seconds between two expiry runs, at least
MAX_INTERVAL = 3600.0  # and at most


async def record(driver: StorageDriver, name: str, digest: Digest) -> None:
    """Notes that `digest` was fetched into repository `name` now."""
    fetched = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    await driver.put_content(paths.proxy_record(name, digest), fetched.encode())


def interval(ttl: float) -> float:
    """How often to look for expired content: a quarter of the ttl, within bounds."""
    return min(max(ttl / 4, MIN_INTERVAL), MAX_INTERVAL)


async def expire(registry: Registry, routes: Routes, now: float) -> int:
    """Unlinks what every cached repository fetched more than its upstream's ttl before `now`;
    returns how many blobs and manifests were unlinked. A repository no route covers any more
    is left as it is."""
    expired = 0
    for name in await registry.walk(paths.PROXY_MARKER):
        route = routes.find(name)
        if route is None or route.ttl is None:
            continue
        repository = Repository(registry, name, deletes=True)
        async for info in registry.driver.walk(paths.proxy_records(name)):
            if info.modified > now - route.ttl:
                continue
            digest = _recorded(name, info.path)
            if digest is not None:
                await _unlink(repository, digest)
                expired += 1
            with contextlib.suppress(PathNotFound):
                await registry.driver.delete(info.path.rpartition("/")[0])
    return expired


def _recorded(name: str, path: str) -> Digest | None:
    """The digest a record's path names."""
    relative = path.removeprefix(paths.proxy_records(name) + "/")
    algorithm, _, rest = relative.partition("/")
    return Digest.parse_or_none(f"{algorithm}:{rest.partition('/')[0]}")


async def _unlink(repository: Repository, digest: Digest) -> None:
    with contextlib.suppress(ManifestUnknown):
        await repository.manifests.delete(str(digest))
    with contextlib.suppress(BlobUnknown):
        await repository.blobs.delete(digest)


async def adopt(registry: Registry, routes: Routes) -> int:
    """Records what distribution's pull-through cache scheduled for expiry (its schedule file,
    moorage.storage.paths) as fetched now, so that what distribution fetched expires here too,
    one ttl after the move at the latest. Entries already recorded, whose links are gone, or no
    route with a ttl covers, are passed over; returns how many were recorded."""
    try:
        schedule = json.loads(await registry.driver.get_content(paths.DISTRIBUTION_PROXY_SCHEDULE))
    except PathNotFound:
        return 0
    except ValueError:
        log.warning("distribution's expiry schedule %s is not JSON: left as it is",
                    paths.DISTRIBUTION_PROXY_SCHEDULE)  # fmt: skip
        return 0
    adopted = 0
    for entry in schedule.values() if isinstance(schedule, dict) else ():
        key = entry.get("Key") if isinstance(entry, dict) else None
        name, _, digest_text = key.partition("@") if isinstance(key, str) else ("", "", "")
        digest = Digest.parse_or_none(digest_text)
        route = routes.find(name)
        if digest is None or route is None or route.ttl is None:
            continue
        try:
            repository = registry.repository(name)
        except NameInvalid:
            continue
        try:
            await registry.driver.stat(paths.proxy_record(name, digest))
            continue  # recorded already
        except PathNotFound:
            pass
        if await repository.blobs.stored(digest) is not None:
            await record(registry.driver, name, digest)
            adopted += 1
    return adopted


async def run(registry: Registry, routes: Routes) -> None:
    """Expires content for as long as the server runs (what distribution fetched too)."""
    ttl = routes.shortest_ttl
    if ttl is None:
        return
    try:
        adopted = await adopt(registry, routes)
    except (StorageError, RegistryError) as exc:
        log.warning("reading distribution's expiry schedule failed (%s)", exc)
    else:
        if adopted:
            log.info("pull-through cache: %d blobs and manifests distribution fetched will "
                     "expire too", adopted)  # fmt: skip
    while True:
        await asyncio.sleep(interval(ttl))
        try:
            expired = await expire(registry, routes, time.time())
        except (StorageError, RegistryError) as exc:
            log.warning("expiring the pull-through cache failed (%s); retrying later", exc)
            continue
        if expired:
            log.info("pull-through cache: %d expired blobs and manifests unlinked", expired)
