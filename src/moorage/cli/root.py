"""What the commands that work on a storage root (fsck, garbage-collect) share: the config, the
driver and the shared cache, built as `moorage serve` builds them, and how they write counts."""

from __future__ import annotations

from moorage.config import secrets
from moorage.config.loader import ConfigError, load
from moorage.config.schema import Config
from moorage.storage import cache as caches
from moorage.storage import driver as drivers
from moorage.storage.cache import BlobDescriptorCache


class Usage(Exception):
    """The command cannot run as asked: one line for the user."""


def config(path: str | None, redactor: secrets.Redactor) -> Config:
    try:
        loaded = load(path, serving=False)
    except ConfigError as exc:
        raise Usage(f"config: {'; '.join(exc.problems)}") from None
    redactor.add(list(secrets.values(loaded.as_tree())))
    return loaded


def driver(config: Config) -> drivers.StorageDriver:
    """The storage driver, built as `moorage serve` builds it."""
    if config.storage.driver == "inmemory":
        raise Usage("config: storage.inmemory keeps nothing outside the serving process")
    try:
        return drivers.create(config.storage.driver, config.storage.parameters)
    except ValueError as exc:
        raise Usage(f"config: {exc}") from None


def shared_cache(config: Config) -> BlobDescriptorCache | None:
    """The cache the registries share (Redis), which changes to storage keep true; an in-memory
    cache is each serving process's own."""
    if config.storage.cache.blobdescriptor != "redis":
        return None
    try:
        return caches.create("redis", {"redis": config.redis})
    except ValueError as exc:
        raise Usage(f"config: {exc}") from None


def plural(count: int, singular: str, plural: str = "") -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if count < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    raise AssertionError("unreachable")
