"""Upload purging (`storage.maintenance.uploadpurging`): sessions older than `age` are deleted,
with their data (on S3, the multipart uploads under them are aborted with it)."""

from __future__ import annotations

import asyncio
import calendar
import contextlib
import logging
import time

from moorage.registry.repository import Registry
from moorage.storage import paths
from moorage.storage.driver import PathNotFound

log = logging.getLogger("moorage.purge")


def _started(text: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 `startedat` (fractions and offsets allowed)."""
    try:
        whole = text.strip()[:19]
        return float(calendar.timegm(time.strptime(whole, "%Y-%m-%dT%H:%M:%S")))
    except ValueError:
        return None


async def purge_uploads(registry: Registry, age: float, dryrun: bool = False) -> list[str]:
    """Deletes (or with `dryrun` only lists) the upload sessions started more than `age`
    seconds ago; returns their directories."""
    driver = registry.driver
    cutoff = time.time() - age
    purged = []
    for name in await registry.walk(paths.UPLOADS_MARKER):
        base = f"{paths.repository(name)}/{paths.UPLOADS_MARKER}"
        try:
            sessions = await driver.list(base)
        except PathNotFound:
            continue
        for session in sessions:
            upload_id = session.rpartition("/")[2]
            try:
                started = _started(
                    (await driver.get_content(paths.upload_started_at(name, upload_id))).decode()
                )
            except PathNotFound:
                try:
                    started = (await driver.stat(session)).modified or None
                except PathNotFound:  # gone meanwhile, or an empty directory (SeaweedFS)
                    continue
            if started is None or started >= cutoff:
                continue
            purged.append(session)
            if not dryrun:
                with contextlib.suppress(PathNotFound):  # purged by another replica meanwhile
                    await driver.delete(session)
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
