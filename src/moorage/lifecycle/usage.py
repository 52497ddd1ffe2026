"""What each repository holds, from two walks of storage: one of the repositories' links, one of
the blobs.

A repository holds the blobs it links: its layers and configs (`_layers`) and its manifests
(`_manifests/revisions`). Of those, `exclusive` counts the bytes of blobs no other repository
links, `shared` the bytes of blobs others link too; `total` is their sum, what the repository
would take alone. The registry's total counts every linked blob once. Upload sessions and blobs
no repository links (garbage awaiting collection) are in none of these.

Memory stays flat in the blobs' content: the computation keeps a size and an owner per blob
digest (and, for shared blobs only, the repositories sharing it).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client.core import GaugeMetricFamily, Metric

from moorage.registry.digest import Digest
from moorage.sizes import human
from moorage.storage import paths
from moorage.storage.driver import PathNotFound, StorageDriver

if TYPE_CHECKING:
    from moorage.lifecycle.quotas import Quotas

log = logging.getLogger("moorage.usage")

_SHARED = -1  # owner of a blob more than one repository links
FOLLOW_EVERY = 1.0  # seconds between looks at the computing worker's file (a local stat)
RETRY_AFTER = 30.0  # seconds before a failed computation is tried again, at most


@dataclass(frozen=True)
class RepositoryUsage:
    name: str
    exclusive: int
    shared: int

    @property
    def total(self) -> int:
        return self.exclusive + self.shared

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "exclusive": self.exclusive,
            "shared": self.shared,
            "total": self.total,
        }


@dataclass(frozen=True)
class Usage:
    repositories: dict[str, RepositoryUsage]  # by name, in lexical order
    total: int  # every linked blob once
    started: float  # when the walks began (seconds since the epoch): writes after it may be
    # missing from the figures
    duration: float = 0.0  # seconds the computation took
    blobs: int = field(default=0)  # linked blobs

    def of(self, name: str) -> RepositoryUsage:
        return self.repositories.get(name) or RepositoryUsage(name, 0, 0)

    def to_json(self, names: Iterable[str] | None = None) -> dict[str, Any]:
        """`{"repositories": [{"name", "exclusive", "shared", "total"}, ...], "total"}`, of
        every repository or of `names`."""
        shown = self.repositories.values() if names is None else (self.of(n) for n in names)
        return {"repositories": [usage.to_json() for usage in shown], "total": self.total}

    def dumps(self) -> str:
        """The whole computation, as `loads` reads it back (for other processes)."""
        document = self.to_json()
        document.update(started=self.started, duration=self.duration, blobs=self.blobs)
        return json.dumps(document)

    @classmethod
    def loads(cls, text: str) -> Usage:
        """Raises ValueError (or KeyError, TypeError) for text `dumps` did not write."""
        document = json.loads(text)
        repositories = {
            entry["name"]: RepositoryUsage(
                entry["name"], int(entry["exclusive"]), int(entry["shared"])
            )
            for entry in document["repositories"]
        }
        return cls(
            repositories,
            int(document["total"]),
            float(document["started"]),
            float(document["duration"]),
            int(document["blobs"]),
        )


def _link_digest(relative: list[str]) -> tuple[str, str] | None:
    """(repository, `alg:hex` the path names) of a layer or manifest revision link, from the
    path's components below `repositories/`; None for any other file. A repository name ends
    at its first component starting with `_` (paths.py)."""
    index = next((i for i, part in enumerate(relative) if part.startswith("_")), None)
    if index is None:
        return None
    name, rest = "/".join(relative[:index]), relative[index:]
    if not name or rest[-1] != "link":
        return None
    if len(rest) == 4 and rest[0] == paths.REPOSITORY_MARKER:
        return name, f"{rest[1]}:{rest[2]}"
    if len(rest) == 5 and rest[0] == paths.MANIFESTS_MARKER and rest[1] == "revisions":
        return name, f"{rest[2]}:{rest[3]}"
    return None


async def _stored_under(driver: StorageDriver, path: str) -> str | None:
    """The digest a link names, for a link under another algorithm than content is stored
    under (a sha512 blob's link names its sha256)."""
    try:
        text = (await driver.get_content(path)).decode("ascii", "replace").strip()
    except PathNotFound:
        return None
    digest = Digest.parse_or_none(text)
    return str(digest) if digest is not None else None


async def compute(driver: StorageDriver) -> Usage:
    """Walks the blobs, then every repository's links. A link whose content is gone counts
    nothing (fsck reports it)."""
    started, clock = time.time(), time.monotonic()
    sizes: dict[str, int] = {}
    blobs_prefix = paths.BLOBS + "/"
    async for info in driver.walk(paths.BLOBS):
        parts = info.path[len(blobs_prefix) :].split("/")
        if len(parts) == 4 and parts[3] == "data" and parts[2].startswith(parts[1]):
            sizes[f"{parts[0]}:{parts[2]}"] = info.size

    names: list[str] = []
    index_of: dict[str, int] = {}
    owner: dict[str, int] = {}  # digest -> the one repository linking it, or _SHARED
    sharers: dict[str, set[int]] = {}  # digest -> repositories linking it, for shared ones
    repositories_prefix = paths.REPOSITORIES + "/"
    async for info in driver.walk(paths.REPOSITORIES):
        found = _link_digest(info.path[len(repositories_prefix) :].split("/"))
        if found is None:
            continue
        name, digest = found
        if not digest.startswith(paths.CONTENT_ALGORITHM + ":"):
            digest = await _stored_under(driver, info.path) or digest
        if digest not in sizes:
            continue
        repository = index_of.get(name)
        if repository is None:
            repository = index_of[name] = len(names)
            names.append(name)
        first = owner.setdefault(digest, repository)
        if first == repository:
            continue
        if first != _SHARED:
            owner[digest] = _SHARED
            sharers[digest] = {first}
        sharers[digest].add(repository)

    exclusive = [0] * len(names)
    shared = [0] * len(names)
    for digest, repository in owner.items():
        if repository != _SHARED:
            exclusive[repository] += sizes[digest]
    for digest, members in sharers.items():
        for repository in members:
            shared[repository] += sizes[digest]
    repositories = {
        name: RepositoryUsage(name, exclusive[index_of[name]], shared[index_of[name]])
        for name in sorted(names)
    }
    total = sum(sizes[digest] for digest in owner)
    return Usage(repositories, total, started, time.monotonic() - clock, len(owner))


class UsageTracker:
    """The registry's usage as last computed, kept current on a schedule, and what this process
    linked since (`hold`), which quotas add to it.

    One process computes (`computes`): every `interval`, and at once when started. With
    `shared` (a file in the run directory of several worker processes), it writes each
    computation there, and the other workers (`computes` false) load it when it changes.
    """

    def __init__(
        self,
        driver: StorageDriver,
        interval: float,
        *,
        computes: bool = True,
        shared: str | None = None,
    ) -> None:
        self.driver = driver
        self.interval = interval
        self.computes = computes
        self.shared = shared
        self.current: Usage | None = None
        self._ready = asyncio.Event()
        self._loaded_version: tuple[int, int] | None = None
        self._held: dict[int, tuple[str, int]] = {}  # in-flight additions by their token
        self._tokens = itertools.count()
        # linked since: repository -> (when, bytes), dropped once a computation started after
        self._added: dict[str, deque[tuple[float, int]]] = {}

    def added(self, repository: str) -> int:
        """Bytes this process linked into the repository that the current usage may miss:
        those in flight and those linked after the computation started."""
        since = self.current.started if self.current is not None else 0.0
        recent = sum(size for when, size in self._added.get(repository, ()) if when >= since)
        return recent + sum(size for name, size in self._held.values() if name == repository)

    def hold(self, repository: str, size: int) -> int:
        """Counts `size` bytes in flight for the repository; returns a token for `settle`."""
        token = next(self._tokens)
        self._held[token] = (repository, size)
        return token

    def settle(self, token: int, linked: bool) -> None:
        """Ends what `hold` started: the bytes were linked (and count from now on), or not."""
        repository, size = self._held.pop(token)
        if linked:
            self._added.setdefault(repository, deque()).append((time.time(), size))

    async def ready(self) -> Usage:
        """The current usage, once there is one; in a following worker, the computing
        worker's latest (a stat of its file tells)."""
        if not self.computes:
            self.load()
        await self._ready.wait()
        assert self.current is not None
        return self.current

    def _use(self, usage: Usage) -> None:
        self.current = usage
        self._ready.set()
        for repository in list(self._added):
            entries = self._added[repository]
            while entries and entries[0][0] < usage.started:
                entries.popleft()
            if not entries:
                del self._added[repository]

    async def refresh(self) -> Usage:
        """Computes now (and shares it, with `shared`)."""
        usage = await compute(self.driver)
        if self.shared is not None:  # before it is used here: no worker lags behind this one
            await asyncio.to_thread(_write_atomically, self.shared, usage.dumps())
        self._use(usage)
        log.debug(
            "usage: %d repositories, %s in %d blobs, computed in %.1fs",
            len(usage.repositories),
            human(usage.total),
            usage.blobs,
            usage.duration,
        )
        return usage

    def load(self) -> bool:
        """Loads the shared file when it changed since last loaded; whether it did."""
        assert self.shared is not None
        try:
            info = os.stat(self.shared)
        except FileNotFoundError:
            return False
        version = (info.st_mtime_ns, info.st_size)
        if version == self._loaded_version:
            return False
        try:
            with open(self.shared, encoding="utf-8") as file:
                usage = Usage.loads(file.read())
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("usage: cannot read %s: %s", self.shared, exc)
            return False
        self._loaded_version = version
        self._use(usage)
        return True

    async def run(self) -> None:
        """Computes (or follows the computing process) until cancelled."""
        if not self.computes:
            while True:
                self.load()
                await asyncio.sleep(FOLLOW_EVERY)
        while True:
            try:
                await self.refresh()
                pause = self.interval
            except Exception:
                pause = min(self.interval, RETRY_AFTER)
                log.exception("usage computation failed; retrying in %.0fs", pause)
            await asyncio.sleep(pause)


def _write_atomically(path: str, text: str) -> None:
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        file.write(text)
    os.replace(temporary, path)


class UsageCollector:
    """The last computed usage as Prometheus gauges, read from the tracker at each scrape (never
    computed by one): per repository its exclusive, shared and total bytes, and its quota where
    it has one; the registry's total; when and how fast it was computed."""

    def __init__(self, tracker: UsageTracker, quotas: Quotas | None = None) -> None:
        self.tracker = tracker
        self.quotas = quotas

    def collect(self) -> Iterator[Metric]:
        usage = self.tracker.current
        if usage is None:
            return
        per_repository = [
            GaugeMetricFamily(f"moorage_repository_{kind}_bytes", text, labels=["repository"])
            for kind, text in (
                ("exclusive", "Bytes of blobs only this repository links."),
                ("shared", "Bytes of blobs this repository links that others link too."),
                ("total", "Bytes of every blob this repository links."),
            )
        ]
        quota = GaugeMetricFamily(
            "moorage_repository_quota_bytes",
            "The most a repository's total may be (storage.quotas).",
            labels=["repository"],
        )
        for name, each in usage.repositories.items():
            for family, value in zip(
                per_repository, (each.exclusive, each.shared, each.total), strict=True
            ):
                family.add_metric([name], value)
            limit = self.quotas.limit_for(name) if self.quotas is not None else None
            if limit is not None:
                quota.add_metric([name], limit.size)
        yield from per_repository
        yield quota
        yield GaugeMetricFamily(
            "moorage_registry_bytes",
            "Bytes of every blob some repository links, each once.",
            value=usage.total,
        )
        yield GaugeMetricFamily(
            "moorage_usage_computed_timestamp_seconds",
            "When the usage these figures come from began to be computed.",
            value=usage.started,
        )
        yield GaugeMetricFamily(
            "moorage_usage_computation_seconds",
            "How long computing the usage took.",
            value=usage.duration,
        )
