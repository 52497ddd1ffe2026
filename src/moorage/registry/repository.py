"""The registry and its repositories: the services the API layer calls."""

from __future__ import annotations

from moorage.registry.blobs import DEFAULT_DELAY, BlobStore, RepositoryBlobs
from moorage.registry.catalog import Catalog, SharedNames
from moorage.registry.digest import Digest
from moorage.registry.manifest_store import Manifests
from moorage.registry.names import check_name
from moorage.registry.uploads import HashStates, Uploads
from moorage.storage import paths
from moorage.storage.cache import BlobDescriptorCache
from moorage.storage.driver import PathNotFound, StorageDriver

MAX_VIEWS = 10_000  # Repository objects kept for reuse


class Repository:
    def __init__(self, registry: Registry, name: str) -> None:
        self.name = name
        driver = registry.driver
        self.blobs = RepositoryBlobs(
            driver, registry.blobs, name, deletes=registry.deletes, catalog=registry.catalog
        )
        self.uploads = Uploads(driver, registry.blobs, self.blobs, name, registry.hash_states)
        self.manifests = Manifests(
            driver,
            registry.blobs,
            self.blobs,
            name,
            deletes=registry.deletes,
            tag_listings=registry.tag_listings,
            tag_links=registry.tag_links,
        )
        self.tags = self.manifests.tags
        self._driver = driver

    async def exists(self) -> bool:
        try:
            await self._driver.stat(paths.manifests(self.name))
        except PathNotFound:
            return False
        return True


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
    ) -> None:
        """`gc_delay` is storage.maintenance.gc.delay, which writers and collections share
        (moorage.registry.sweeps)."""
        self.driver = driver
        self.deletes = deletes
        self.blobs = BlobStore(driver, cache, delay=gc_delay)
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
