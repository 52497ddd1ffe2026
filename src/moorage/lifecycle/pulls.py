"""When tags and manifests were last pulled, for retention: recorded in storage (paths.py
`_pulls/`), where every worker and replica sees them, without a storage write per pull.

A pull (a manifest GET, by tag or by digest) is only noted in memory. A background flush, once
per `interval`, writes what was noted since: one small file per tag or manifest, skipped when
this process or any other wrote that file less than `interval` ago (a stat tells). So the whole
registry writes each record at most about once per interval however often it is pulled, and a
pull time is as coarse as the interval. Storage is the only truth: nothing is lost to a cache
going away, and a process stopping flushes what it noted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from moorage.registry.digest import Digest
from moorage.storage import paths
from moorage.storage.driver import PathNotFound, StorageDriver

log = logging.getLogger("moorage.retention")

MAX_REMEMBERED = 100_000  # records this process remembers writing, to skip their stat


class PullRecorder:
    """Notes pulls (`note`, on the request path: memory only) and writes them (`flush`)."""

    def __init__(self, driver: StorageDriver, interval: float) -> None:
        self.driver = driver
        self.interval = interval
        self._noted: set[str] = set()  # record paths pulled since the last flush
        self._written: dict[str, float] = {}  # record path -> when this process wrote it

    def note(self, repository: str, tag: str | None, digest: Digest) -> None:
        """A manifest of `repository` was pulled, by `tag` or (None) by its digest."""
        if tag is not None:
            self._noted.add(paths.tag_pull(repository, tag))
        else:
            self._noted.add(paths.manifest_pull(repository, digest))

    async def flush(self) -> int:
        """Writes the records noted since the last flush that no process wrote within the
        interval; returns how many were written."""
        noted, self._noted = self._noted, set()
        written = 0
        now = time.time()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)).encode()
        for path in sorted(noted):
            if self._written.get(path, 0.0) > now - self.interval:
                continue
            try:
                if (await self.driver.stat(path)).modified > now - self.interval:
                    continue  # another worker or replica wrote it
            except PathNotFound:
                pass
            await self.driver.put_content(path, stamp)
            if len(self._written) >= MAX_REMEMBERED:
                self._written.clear()
            self._written[path] = now
            written += 1
        return written

    async def run(self) -> None:
        """Flushes every interval until cancelled; `close` flushes what is left."""
        while True:
            await asyncio.sleep(self.interval)
            await self.close()

    async def close(self) -> None:
        """Flushes now; a failure is logged and what it could not write is noted again."""
        pending = set(self._noted)
        try:
            await self.flush()
        except Exception:
            log.exception("writing pull times failed; retrying at the next flush")
            self._noted |= pending


@dataclass
class PullTimes:
    """A repository's pull records: seconds since the epoch, by tag and by manifest digest."""

    tags: dict[str, float] = field(default_factory=dict)
    manifests: dict[Digest, float] = field(default_factory=dict)

    def of(self, tag: str, digest: Digest) -> float | None:
        """When the tag was last pulled: by its name, or by the digest it points at."""
        times = [t for t in (self.tags.get(tag), self.manifests.get(digest)) if t is not None]
        return max(times) if times else None


async def pull_times(driver: StorageDriver, repository: str) -> PullTimes:
    """The repository's pull records, from one walk of them."""
    found = PullTimes()
    base = paths.pulls(repository) + "/"
    async for info in driver.walk(paths.pulls(repository)):
        parts = info.path[len(base) :].split("/")
        if len(parts) == 2 and parts[0] == "tags":
            found.tags[parts[1]] = info.modified
        elif len(parts) == 3 and parts[0] == "manifests":
            digest = Digest.parse_or_none(f"{parts[1]}:{parts[2]}")
            if digest is not None:
                found.manifests[digest] = info.modified
    return found
