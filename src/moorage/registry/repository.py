"""The registry and its repositories: the services the API layer calls.

The API asks a Namespace for each repository it serves and calls the few methods below on it
(RepositoryService and its parts). The Registry is the namespace of what storage holds; a
pull-through cache (moorage.proxy) is another, which serves some names from an upstream. What
wraps a repository's services (moorage.notifications emits events around them) stands in for
them unchanged, whichever namespace the repository came from.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol

from moorage.registry import manifests as schema
from moorage.registry.admission import Admission
from moorage.registry.blobs import (
    DEFAULT_DELAY,
    Arriving,
    BlobInfo,
    BlobStore,
    RepositoryBlobs,
)
from moorage.registry.catalog import Catalog, SharedNames
from moorage.registry.digest import DEFAULT_ALGORITHM, Digest
from moorage.registry.errors import NameUnknown, Unsupported
from moorage.registry.manifest_store import (
    IndexChildren,
    LayerURLs,
    Manifests,
    PutResult,
    StoredManifest,
)
from moorage.registry.names import check_name
from moorage.registry.uploads import HashStates, Uploads
from moorage.storage import paths
from moorage.storage.cache import BlobDescriptorCache
from moorage.storage.driver import PathNotFound, StorageDriver
from moorage.storage.middleware import Redirector

MAX_VIEWS = 10_000  # Repository objects kept for reuse

# The protocols' methods return Awaitable: what coroutine functions and decorated ones alike do.


class BlobService(Protocol):
    """A repository's blobs, as the API uses them."""

    def open(self, digest: Digest, *, content: bool = True) -> Awaitable[BlobInfo | Arriving]:
        """The blob a pull (a GET or HEAD) serves: its BlobInfo, to be read from the store, or
        the blob while it arrives (a pull-through cache's fetch). Without `content` its bytes
        are not wanted (a HEAD, a 304), and nothing is fetched. Raises BlobUnknown."""
        ...

    def delete(self, digest: Digest) -> Awaitable[None]: ...

    def mount(
        self, digest: Digest, source: RepositoryBlobs | None
    ) -> Awaitable[BlobInfo | None]: ...

    def forget(self, digest: Digest) -> Awaitable[None]:
        """Drops what the cache knows of the repository's link (content found gone)."""
        ...


class UploadService(Protocol):
    """A repository's upload sessions, as the API uses them (see registry.uploads.Uploads)."""

    def start(self, algorithm: str = DEFAULT_ALGORITHM) -> Awaitable[str]: ...

    def size(self, upload_id: str) -> Awaitable[int]: ...

    def append(
        self,
        upload_id: str,
        body: AsyncIterator[bytes],
        *,
        start: int | None = None,
        length: int | None = None,
    ) -> Awaitable[int]: ...

    def upload(self, digest: Digest, body: AsyncIterator[bytes]) -> Awaitable[BlobInfo]: ...

    def commit(
        self, upload_id: str, digest: Digest, body: AsyncIterator[bytes] | None = None
    ) -> Awaitable[BlobInfo]: ...

    def cancel(self, upload_id: str) -> Awaitable[None]: ...


class ManifestService(Protocol):
    """A repository's manifests, as the API uses them (see registry.manifest_store)."""

    def resolve(self, reference: str) -> Awaitable[Digest]:
        """The digest a tag or digest reference names now (for a cached tag: the upstream's)."""
        ...

    def get(self, reference: str, resolved: Digest | None = None) -> Awaitable[StoredManifest]:
        """The manifest `reference` names (a pull); `resolved` is what `resolve(reference)`
        answered already, when the caller asked first."""
        ...

    def put(
        self, reference: str, payload: bytes, content_type: str | None, extra_tags: list[str]
    ) -> Awaitable[PutResult]: ...

    def delete(self, reference: str) -> Awaitable[list[str]]:
        """The tags the delete removed, in order."""
        ...

    def referrer_descriptors(
        self, subject: Digest, artifact_type: str | None
    ) -> Awaitable[list[schema.Descriptor]]: ...


class TagService(Protocol):
    def all(self) -> Awaitable[list[str]]:
        """Every tag, in lexical order; NameUnknown where the service itself knows the
        repository does not exist."""
        ...


class RepositoryService(Protocol):
    """One repository, as the API uses it."""

    @property
    def name(self) -> str: ...

    @property
    def blobs(self) -> BlobService: ...

    @property
    def uploads(self) -> UploadService: ...

    @property
    def manifests(self) -> ManifestService: ...

    @property
    def tags(self) -> TagService: ...

    def exists(self) -> Awaitable[bool]: ...


class Namespace(Protocol):
    def repository(self, name: str) -> RepositoryService:
        """Raises NameInvalid for a name outside the grammar."""
        ...


class PullLog(Protocol):
    """Told of each manifest pull (retention's pull times: moorage/lifecycle/pulls.py). Called
    on the request path: it must not wait for anything."""

    def note(self, repository: str, tag: str | None, digest: Digest) -> None: ...


class Repository:
    def __init__(self, registry: Registry, name: str, *, deletes: bool | None = None) -> None:
        """`deletes` overrides the registry's setting (storage.delete.enabled): the registry's
        own housekeeping removes what clients may not."""
        self.name = name
        driver = registry.driver
        deletes = registry.deletes if deletes is None else deletes
        self.blobs = RepositoryBlobs(
            driver,
            registry.blobs,
            name,
            deletes=deletes,
            catalog=registry.catalog,
            admission=registry.admission,
        )
        self.uploads = Uploads(driver, registry.blobs, self.blobs, name, registry.hash_states)
        self.manifests = Manifests(
            driver,
            registry.blobs,
            self.blobs,
            name,
            deletes=deletes,
            tag_listings=registry.tag_listings,
            tag_links=registry.tag_links,
            layer_urls=registry.layer_urls,
            index_children=registry.index_children,
        )
        self.tags = self.manifests.tags
        self._driver = driver
        self._deletes = registry.deletes
        self._catalog = registry.catalog

    async def exists(self) -> bool:
        try:
            await self._driver.stat(paths.manifests(self.name))
        except PathNotFound:
            return False
        return True

    async def delete(self) -> None:
        """Removes the whole repository: its manifests and tags, referrers index and pull
        records, then its layer links, which take it out of the catalog. Blob content stays for
        garbage collection, upload sessions for purging; a repository nested below this one
        (`team/app/db` below `team/app`) is left whole. NameUnknown when there is none."""
        if not self._deletes:
            raise Unsupported("deletes are disabled on this registry")
        if not await self.exists():
            raise NameUnknown(detail={"name": self.name})
        # refused before any change when a shared cache is out of reach
        for digest in [*await self.manifests.revisions(), *await self.blobs.links()]:
            await self.blobs.forget(digest)
        for directory in (
            paths.manifests(self.name),
            paths.referrer_subjects(self.name),
            paths.pulls(self.name),
            paths.layers(self.name),
        ):
            with contextlib.suppress(PathNotFound):
                await self._driver.delete(directory)
        await self._catalog.remove(self.name)


class Registry:
    """Every repository over one storage driver."""

    def __init__(
        self,
        driver: StorageDriver,
        *,
        deletes: bool = False,
        cache: BlobDescriptorCache | None = None,
        shared_names: SharedNames | None = None,
        gc_delay: float = DEFAULT_DELAY,
        admission: Admission | None = None,
        pull_log: PullLog | None = None,
        redirector: Redirector | None = None,
        layer_urls: LayerURLs | None = None,
        index_children: IndexChildren | None = None,
    ) -> None:
        """`gc_delay` is storage.maintenance.gc.delay, which writers and collections share
        (moorage.registry.sweeps)."""
        self.driver = driver
        self.layer_urls = layer_urls
        self.index_children = index_children
        self.deletes = deletes
        self.admission = admission
        self.pull_log = pull_log
        self.blobs = BlobStore(driver, cache, redirector, delay=gc_delay)
        self.tag_listings: dict[str, tuple[float, list[str]]] = {}  # see Tags.all
        self.tag_links: dict[str, tuple[str, Digest]] = {}  # see Tags.get
        self.catalog = Catalog(self._walk_repositories, shared=shared_names)
        self.hash_states = HashStates()
        self._repositories: dict[str, Repository] = {}

    def repository(self, name: str) -> Repository:
        """Raises NameInvalid for a name outside the grammar. A Repository keeps no state of its
        own (it is a view of this registry's), so the views of recent names are reused."""
        found = self._repositories.get(name)
        if found is None:
            found = Repository(self, check_name(name))
            if len(self._repositories) >= MAX_VIEWS:
                self._repositories.clear()
            self._repositories[name] = found
        return found

    async def repositories(self) -> list[str]:
        """Every repository, in lexical order (from the catalog index)."""
        return await self.catalog.names()

    async def _walk_repositories(self) -> list[str]:
        return await self.walk(paths.REPOSITORY_MARKER)

    async def walk(self, *markers: str) -> list[str]:
        """Every repository with one of the `markers` children, in lexical order. The catalog's
        repositories are the directories below `repositories/` with a `_layers` child, as
        distribution's catalog has it (an image's config and layers are always linked there);
        names may nest (`a/b` and `a/b/c`)."""
        found: list[str] = []
        pending = [paths.REPOSITORIES]
        prefix = paths.REPOSITORIES + "/"
        while pending:
            directory = pending.pop()
            try:
                children = await self.driver.list(directory)
            except PathNotFound:
                continue
            for child in children:
                base = child.rpartition("/")[2]
                if base in markers:
                    found.append(directory[len(prefix) :])
                elif not base.startswith("_"):
                    pending.append(child)
        return sorted(set(found))
