"""The garbage collection a server runs by itself (`storage.maintenance.gc`), in one of its
workers: every `interval`, under the root's lease, the passes plugged in before it (retention
untags there), then a collection (which retention's policies tell what it may remove). A run
another process holds the lease for is skipped."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from moorage.lifecycle.gc import Collector, Event, Options, Pass, Summary
from moorage.lifecycle.lease import Lease
from moorage.lifecycle.retention import Retention
from moorage.registry.repository import Registry

log = logging.getLogger("moorage.gc")


async def collect_once(
    registry: Registry,
    options: Options,
    lease: Lease,
    passes: Sequence[Pass] = (),
    retention: Retention | None = None,
) -> Summary | None:
    """One scheduled run; None when another collection holds the lease."""
    other = await lease.acquire()
    if other is not None:
        log.info("garbage collection skipped: %s is collecting this root", other)
        return None
    try:
        for each in passes:
            await each(registry, options.dryrun)
        summary = await Collector(
            registry, options, report=_log, held=lease.held, retention=retention
        ).collect()
    finally:
        await lease.release()
    log.info(
        "garbage collection %s: %d manifests, %d blobs (%d bytes), %d layer links, "
        "%d repositories; %d blobs marked%s",
        "dry run" if options.dryrun else "done",
        summary.manifests,
        summary.blobs,
        summary.bytes,
        summary.links,
        summary.repositories,
        summary.marked,
        f"; {summary.stopped}" if summary.stopped else "",
    )
    for manifest in summary.unreadable:
        log.warning("garbage collection: manifest %s cannot be read; its links were kept", manifest)
    return summary


def _log(event: Event) -> None:
    where = f"{event.repository} " if event.repository else ""
    log.debug("garbage collection: %s %s%s", event.kind, where, event.digest or "")


async def run(
    registry: Registry,
    options: Options,
    interval: float,
    lease: Lease,
    passes: Sequence[Pass] = (),
    retention: Retention | None = None,
) -> None:
    """Collects every `interval` seconds, the first time `interval` after the start; failures
    are logged and the next run tries again."""
    while True:
        await asyncio.sleep(interval)
        try:
            await collect_once(registry, options, lease, passes, retention)
        except Exception:
            log.exception("garbage collection failed")
