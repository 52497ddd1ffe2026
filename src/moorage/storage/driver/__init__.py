"""Storage drivers, registered by the name the config uses. Importing this package registers the
built-in ones; the modules of the object store drivers (and their client libraries) load when
such a driver is created."""

from moorage.storage.driver import filesystem, inmemory
from moorage.storage.driver.base import (
    FileInfo,
    FileWriter,
    InvalidPath,
    PathNotFound,
    StorageDriver,
    StorageError,
    StorageFull,
    create,
    register,
    register_module,
    registered,
)

register_module("s3", "moorage.storage.driver.s3")
register_module("gcs", "moorage.storage.driver.gcs")
register_module("azure", "moorage.storage.driver.azure")

__all__ = [
    "FileInfo",
    "FileWriter",
    "InvalidPath",
    "PathNotFound",
    "StorageDriver",
    "StorageError",
    "StorageFull",
    "create",
    "filesystem",
    "inmemory",
    "register",
    "register_module",
    "registered",
]
