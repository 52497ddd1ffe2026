"""The OCI error envelope, and the one table from domain errors to error codes and statuses.

Every error the API answers goes through `error_response`; an exception not in the table is a
500 `UNKNOWN` whose details stay in the log, never in the response.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from moorage.auth.errors import Denied, InvalidRequest, TooManyRequests, Unauthorized
from moorage.registry import errors as e


class EndpointNotFound(e.RegistryError):
    """No API endpoint at that path."""

    message = "the requested endpoint does not exist"


class MethodNotAllowed(e.RegistryError):
    """The endpoint exists but not for that method."""

    message = "the method is not allowed for this endpoint"


class InternalError(e.RegistryError):
    """Anything unexpected: the log has the details."""

    message = "an internal error occurred; see the registry's log"


class ServiceUnavailable(e.RegistryError):
    """A health check is failing: the storage cannot be trusted to answer."""

    message = "the registry is unhealthy; see /debug/health"


class RequestRefused(e.RegistryError):
    """The HTTP layer refused what a handler asked it to read (a malformed form body)."""

    message = "the request could not be read"


class RequestTooLarge(RequestRefused):
    """A body larger than the HTTP layer reads whole (a form over its limit)."""

    message = "the request body is too large"


# domain error -> (OCI error code, HTTP status)
TABLE: dict[type[e.RegistryError], tuple[str, int]] = {
    e.NameInvalid: ("NAME_INVALID", 400),
    e.NameUnknown: ("NAME_UNKNOWN", 404),
    e.TagInvalid: ("TAG_INVALID", 400),
    e.ReferenceInvalid: ("TAG_INVALID", 400),  # meant as a tag unless it looks like a digest
    e.DigestInvalid: ("DIGEST_INVALID", 400),
    e.BlobUnknown: ("BLOB_UNKNOWN", 404),
    e.BlobUploadUnknown: ("BLOB_UPLOAD_UNKNOWN", 404),
    e.BlobUploadInvalid: ("BLOB_UPLOAD_INVALID", 400),
    e.RangeInvalid: ("BLOB_UPLOAD_INVALID", 416),
    e.BlobRangeNotSatisfiable: ("RANGE_INVALID", 416),
    e.ManifestUnknown: ("MANIFEST_UNKNOWN", 404),
    e.ManifestInvalid: ("MANIFEST_INVALID", 400),
    e.ManifestBlobUnknown: ("MANIFEST_BLOB_UNKNOWN", 400),
    e.ManifestTooLarge: ("SIZE_INVALID", 413),
    e.PaginationInvalid: ("PAGINATION_NUMBER_INVALID", 400),
    e.Unsupported: ("UNSUPPORTED", 405),
    e.QuotaExceeded: ("DENIED", 403),
    e.Unavailable: ("UNAVAILABLE", 503),
    e.InsufficientStorage: ("UNAVAILABLE", 507),  # RFC 4918's status; the code clients know
    EndpointNotFound: ("NOT_FOUND", 404),
    MethodNotAllowed: ("UNSUPPORTED", 405),
    InternalError: ("UNKNOWN", 500),
    ServiceUnavailable: ("UNAVAILABLE", 503),
    Unauthorized: ("UNAUTHORIZED", 401),
    Denied: ("DENIED", 403),
    InvalidRequest: ("UNSUPPORTED", 400),
    RequestRefused: ("UNSUPPORTED", 400),
    RequestTooLarge: ("SIZE_INVALID", 413),
    TooManyRequests: ("TOOMANYREQUESTS", 429),
}


def code_and_status(error: e.RegistryError) -> tuple[str, int]:
    for cls in type(error).__mro__:
        if cls in TABLE:
            return TABLE[cls]
    return TABLE[InternalError]


def error_response(
    error: e.RegistryError, headers: Mapping[str, str] | None = None
) -> web.Response:
    code, status = code_and_status(error)
    entry: dict[str, Any] = {"code": code, "message": error.message}
    if error.detail is not None:
        entry["detail"] = error.detail
    return web.Response(
        status=status,
        body=json.dumps({"errors": [entry]}).encode(),
        content_type="application/json",
        headers={**error.headers, **(headers or {})},
    )
