"""What every handler needs from the request: the registry, the repository, absolute URLs."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from moorage.registry.repository import Registry, Repository


@dataclass(frozen=True)
class Settings:
    """The API's own settings, from the config tree."""

    readonly: bool = False
    catalog_max_entries: int = 1000


REGISTRY = web.AppKey("registry", Registry)
SETTINGS = web.AppKey("settings", Settings)


def registry(request: web.Request) -> Registry:
    return request.app[REGISTRY]


def settings(request: web.Request) -> Settings:
    return request.app[SETTINGS]


def repository(request: web.Request) -> Repository:
    """The repository named in the path; NameInvalid for a name outside the grammar."""
    return registry(request).repository(request.match_info["name"])


def absolute_url(request: web.Request, path: str) -> str:
    """The URL a client uses to reach `path` on this registry."""
    return f"{request.scheme}://{request.host}{path}"
