"""How garbage collection deletes content that writers may be claiming at the same moment, with no
lock and no read-only window.

Content is *used* when a writer links it (an upload, a mount, a manifest PUT naming it) and when
a reader fetches it in a repository (moorage.registry.uses); a use renews the modification time
of the content's file. The collector (moorage.lifecycle.gc) deletes content, and links to it,
only when nothing used it for `delay`, in a handshake with the writers:

    collector: announce X (a file under _gc/sweeps) -> stat X: used within `delay`? keep it
               -> else delete X's links and content -> withdraw the announcement
    writer:    write its links -> touch X -> wait while an announcement names X
               -> check that X and its links are still there

If the writer's touch comes before the collector's stat, the collector sees X in use and keeps
it. If it comes after, the announcement was made before the writer started waiting, so the
writer's check sees everything the collector deleted, and it repairs (an upload moves its own
bytes into place) or fails (a manifest PUT, with MANIFEST_BLOB_UNKNOWN) instead of answering
success. Either way no success is answered for content that is deleted afterwards. This assumes
that the clocks of the machines sharing the storage agree to well within `delay`, and that no
process stops for STALE seconds in the middle of a step: an announcement older than that is
taken for one a dead collector left, and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field

from moorage.registry.digest import Digest
from moorage.registry.errors import Unavailable
from moorage.storage import paths
from moorage.storage.driver import PathNotFound, StorageDriver

STALE = 120.0  # seconds after which an announcement is a dead collector's
POLL = 0.05  # seconds between looks while an announcement names a claimed digest


@dataclass
class Announcement:
    path: str
    digests: frozenset[Digest]
    made: float = field(default_factory=time.monotonic)

    def fresh(self) -> bool:
        """Whether writers still heed it: a collector acts on its announcement only while
        this holds, with a margin."""
        return time.monotonic() - self.made < STALE / 2


class Sweeps:
    """The announcements of deletions in progress on one storage root."""

    def __init__(self, driver: StorageDriver) -> None:
        self.driver = driver

    async def announce(self, digests: Iterable[Digest]) -> Announcement:
        named = frozenset(digests)
        path = paths.sweep(uuid.uuid4().hex)
        await self.driver.put_content(path, "".join(f"{d}\n" for d in sorted(named)).encode())
        return Announcement(path, named)

    async def withdraw(self, announcement: Announcement) -> None:
        with contextlib.suppress(PathNotFound):
            await self.driver.delete(announcement.path)

    async def announced(self) -> set[Digest]:
        """Every digest a live announcement names."""
        try:
            names = await self.driver.list(paths.SWEEPS)
        except PathNotFound:
            return set()
        found: set[Digest] = set()
        for path in names:
            try:
                if (await self.driver.stat(path)).modified < time.time() - STALE:
                    continue
                content = await self.driver.get_content(path)
            except PathNotFound:
                continue  # withdrawn meanwhile
            for line in content.decode("ascii", "replace").split():
                digest = Digest.parse_or_none(line)
                if digest is not None:
                    found.add(digest)
        return found

    async def wait(self, digests: set[Digest]) -> None:
        """Returns once no live announcement names any of `digests`; Unavailable when one
        still does after STALE seconds."""
        if not digests:
            return
        deadline = time.monotonic() + STALE
        while digests & await self.announced():
            if time.monotonic() > deadline:
                raise Unavailable("a garbage collection is deleting this content; retry")
            await asyncio.sleep(POLL)

    async def remove_stale(self) -> int:
        """Removes the announcements dead collectors left; how many."""
        removed = 0
        async for info in self.driver.walk(paths.SWEEPS):
            if info.modified < time.time() - STALE:
                with contextlib.suppress(PathNotFound):
                    await self.driver.delete(info.path)
                    removed += 1
        return removed
