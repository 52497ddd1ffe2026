"""Blob descriptor caches (`storage.cache.blobdescriptor`), registered by the config's name."""

from moorage.storage.cache import inmemory, redis
from moorage.storage.cache.base import (
    BlobDescriptorCache,
    CachedBlob,
    CacheUnavailable,
    MeasuredCache,
    create,
    register,
    registered,
)

__all__ = [
    "BlobDescriptorCache",
    "CacheUnavailable",
    "CachedBlob",
    "MeasuredCache",
    "create",
    "inmemory",
    "redis",
    "register",
    "registered",
]
