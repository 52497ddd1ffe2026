"""Domain errors: what went wrong in registry terms, independent of HTTP.

Each class is declarative: a docstring and a default `message`; `detail` carries what the client
needs to act (the digest, the name). The API layer maps each class to an OCI error code and an
HTTP status in one table (moorage.api.errors); anything not listed there is a 500 `UNKNOWN`.
"""

from __future__ import annotations

from typing import Any


class RegistryError(Exception):
    """Base of every domain error."""

    message = "registry error"

    def __init__(
        self, message: str | None = None, detail: Any = None, headers: dict[str, str] | None = None
    ) -> None:
        self.message = message or self.message
        self.detail = detail
        self.headers = headers or {}  # response headers the answer needs (a challenge, a delay)
        super().__init__(self.message)


class NameInvalid(RegistryError):
    """The repository name breaks the distribution grammar."""

    message = "invalid repository name"


class NameUnknown(RegistryError):
    """No repository of that name."""

    message = "repository name not known to registry"


class TagInvalid(RegistryError):
    """The tag breaks the grammar `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`."""

    message = "invalid tag"


class ReferenceInvalid(RegistryError):
    """A manifest reference that is neither a tag nor a digest."""

    message = "invalid reference"


class DigestInvalid(RegistryError):
    """A digest is malformed, of an unsupported algorithm, or does not match the content."""

    message = "provided digest did not match uploaded content"


class BlobUnknown(RegistryError):
    """The blob is not linked into this repository, or its content is gone."""

    message = "blob unknown to registry"


class BlobUploadUnknown(RegistryError):
    """No upload session of that id in this repository."""

    message = "blob upload unknown to registry"


class BlobUploadInvalid(RegistryError):
    """The upload request is malformed (a bad Content-Range, a body of the wrong length)."""

    message = "blob upload invalid"


class RangeInvalid(RegistryError):
    """A chunk does not start where the session ends; the session is left as it was."""

    message = "requested range not satisfiable"

    def __init__(self, message: str | None = None, detail: Any = None, *, size: int = 0) -> None:
        super().__init__(message, detail)
        self.size = size


class BlobRangeNotSatisfiable(RegistryError):
    """A GET's Range lies outside the blob."""

    message = "requested range not satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(detail={"size": size})
        self.size = size


class ManifestUnknown(RegistryError):
    """No manifest for that tag or digest in this repository."""

    message = "manifest unknown"


class ManifestInvalid(RegistryError):
    """The manifest cannot be parsed or breaks its schema."""

    message = "manifest invalid"


class ManifestBlobUnknown(RegistryError):
    """The manifest references a config or layer that is not in the repository."""

    message = "blob unknown to registry"


class ManifestTooLarge(RegistryError):
    """The manifest is larger than the registry accepts."""

    message = "manifest too large"


class PaginationInvalid(RegistryError):
    """`n` is not a non-negative integer."""

    message = "invalid number of results requested"


class Unsupported(RegistryError):
    """The operation is switched off by configuration (delete disabled, read-only mode)."""

    message = "the operation is unsupported"


class QuotaExceeded(RegistryError):
    """The push would take the repository over its quota; the message says by how much."""

    message = "repository quota exceeded"


class Unavailable(RegistryError):
    """A dependency the operation needs cannot be reached now; retry later."""

    message = "the operation is temporarily unavailable"


class InsufficientStorage(RegistryError):
    """The registry's storage has no space left for the write: nothing of it was committed."""

    message = "the registry's storage is full; retry once space has been freed"
