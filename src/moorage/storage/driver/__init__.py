"""Storage drivers, registered by the name the config uses. Importing this package registers the
built-in ones."""

from moorage.storage.driver import filesystem, inmemory, s3
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
    registered,
)

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
    "registered",
    "s3",
]
