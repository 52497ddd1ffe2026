"""Upload purging (`storage.maintenance.uploadpurging`): sessions older than `age` are deleted,
with their data (on S3, the multipart uploads under them are aborted with it)."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from moorage.registry.blobs import child_names
from moorage.registry.repository import Registry
from moorage.storage import paths
from moorage.storage.driver import PathNotFound

log = logging.getLogger("moorage.purge")


@dataclass(frozen=True)
class Session:
    repository: str
    upload_id: str
    started: float | None  # seconds since the epoch; None when it cannot be told

    @property
    def directory(self) -> str:
        return paths.upload_dir(self.repository, self.upload_id)


def _started(text: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 `startedat` (fractions and offsets allowed)."""
    try:
        whole = text.strip()[:19]
        return float(calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


async def sessions(registry: Registry) -> AsyncIterator[Session]:
    """Every upload session of every repository, with its start: its `startedat`, or the
    session directory's modification time where that file is missing."""
    driver = registry.driver
    for name in await registry.walk(paths.UPLOADS_MARKER):
        for upload_id in await child_names(driver, paths.uploads(name)):
            try:
                text = await driver.get_content(paths.upload_started_at(name, upload_id))
                started = _started(text.decode("ascii", "replace"))
            except PathNotFound:
                try:
                    started = (await driver.stat(paths.upload_dir(name, upload_id))).modified
                except PathNotFound:  # gone meanwhile, or an empty directory (SeaweedFS)
                    continue
            yield Session(name, upload_id, started or None)


def is_stale(session: Session, age: float) -> bool:
    """Whether the session started more than `age` seconds ago."""
    return session.started is not None and session.started < time.time() - age


async def remove(registry: Registry, session: Session) -> None:
    with contextlib.suppress(PathNotFound):  # purged by another replica meanwhile
        await registry.driver.delete(session.directory)


async def purge_uploads(registry: Registry, age: float, dryrun: bool = False) -> list[str]:
    """Deletes (or with `dryrun` only lists) the upload sessions started more than `age`
    seconds ago; returns their directories."""
    purged = []
    async for session in sessions(registry):
        if not is_stale(session, age):
            continue
        purged.append(session.directory)
        if not dryrun:
            await remove(registry, session)
    if purged:
        log.info(
            "%s %d upload sessions older than %.0fs",
            "would purge" if dryrun else "purged",
            len(purged),
            age,
        )
    return purged


async def run(registry: Registry, age: float, interval: float, dryrun: bool) -> None:
    """Purges now and then every `interval` seconds; failures are logged and retried."""
    while True:
        try:
            await purge_uploads(registry, age, dryrun)
        except Exception:
            log.exception("upload purge failed")
        await asyncio.sleep(interval)
