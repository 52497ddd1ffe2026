"""Storage drivers, registered by the name the config uses. Importing this package registers the
built-in ones; s3's module (and its client library) loads when an s3 driver is created."""

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
