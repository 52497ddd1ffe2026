"""Authentication errors; their codes and statuses are in moorage.api.errors' table."""

from __future__ import annotations

from moorage.registry.errors import RegistryError


class Unauthorized(RegistryError):
    """No credentials, bad credentials, or a token that does not cover the request: answered
    401 with the challenge (`WWW-Authenticate`) telling the client how to authenticate."""

    message = "authentication required"


class Denied(RegistryError):
    """The caller is known and is refused this operation."""

    message = "requested access to the resource is denied"


class TooManyRequests(RegistryError):
    """Too many failed logins for this user or address; `Retry-After` says when to retry."""

    message = "too many failed login attempts; retry later"


class InvalidRequest(RegistryError):
    """A token request the server does not understand (OAuth2's invalid or unsupported
    request), answered 400."""

    message = "invalid token request"
