"""What every handler needs from the request: the registry, the settings, and URLs as the
client must see them."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from aiohttp import web

from moorage.auth.controllers import AccessController
from moorage.registry.repository import Registry, Repository

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
LOOPBACK: list[Network] = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")]


@dataclass(frozen=True)
class Settings:
    """The API's own settings, from the config tree."""

    readonly: bool = False
    catalog_max_entries: int = 1000
    prefix: str = ""  # "" or "/path", no trailing slash
    host: str = ""  # scheme://host[:port] clients reach the registry at, when set
    relative_urls: bool = False
    headers: dict[str, list[str]] = field(default_factory=dict)  # added to every response
    secret: bytes = b""  # signs upload session state
    redirect: bool = True  # blob GETs answer 307 to the driver's direct URL, where it has one
    trusted_proxies: list[Network] = field(default_factory=lambda: list(LOOPBACK))


REGISTRY = web.AppKey("registry", Registry)
SETTINGS = web.AppKey("settings", Settings)
ACCESS = web.AppKey("access", AccessController)  # only when auth is configured
GRANT = "grant"  # request key: the moorage.auth.scopes.Grant of an authorized request


def registry(request: web.Request) -> Registry:
    return request.app[REGISTRY]


def settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def repository(request: web.Request) -> Repository:
    """The repository named in the path; NameInvalid for a name outside the grammar."""
    return registry(request).repository(request.match_info["name"])


def api_path(request: web.Request, path: str) -> str:
    """`path` (from `/v2/` on) under the configured prefix."""
    return settings(request).prefix + path


def absolute_url(request: web.Request, path: str) -> str:
    """The URL a client uses to reach `path` (from `/v2/` on): relative when
    `http.relativeurls`, on `http.host` when set, else on the scheme and host the client used,
    as a reverse proxy reports them (`X-Forwarded-Proto`/`-Host`, `Forwarded`)."""
    current = settings(request)
    full = current.prefix + path
    if current.relative_urls:
        return full
    if current.host:
        return current.host.rstrip("/") + full
    forwarded = request.forwarded[0] if request.forwarded else {}
    scheme = (
        request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip()
        or forwarded.get("proto")
        or request.scheme
    )
    host = (
        request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
        or forwarded.get("host")
        or request.host
    )
    return f"{scheme}://{host}{full}"
