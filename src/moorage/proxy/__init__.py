"""The pull-through cache: names served from an upstream registry and kept in storage.

distribution's `proxy.remoteurl` makes every name a cached copy of that upstream; moorage's
`proxy.upstreams` maps name prefixes to upstreams, and the names no route covers stay ordinary,
pushable repositories. The API serves repositories through the PullThrough namespace, which
hands out a read-through repository (moorage.proxy.repository) for a covered name and the
registry's own repository for any other.

Per process: the upstream connections and tokens, and the fetches in flight (one per blob). The
expiry of what was fetched runs once per server (the first worker), and as well on every
replica, harmlessly: unlinking what is already unlinked does nothing.
"""

from __future__ import annotations

import logging

from moorage.config.schema import Config, Duration
from moorage.durations import seconds
from moorage.proxy import expiry
from moorage.proxy.repository import Observer, ProxyRepository, Shared
from moorage.proxy.routes import Route, Routes
from moorage.proxy.upstream import Upstream
from moorage.registry.repository import Registry, RepositoryService

__all__ = ["PullThrough", "from_config"]

log = logging.getLogger("moorage.proxy")

DEFAULT_TTL = 168 * 3600.0  # distribution's: a week


class PullThrough:
    """moorage.registry.repository.Namespace: the registry, with the names `routes` covers
    read through to their upstreams."""

    def __init__(
        self,
        registry: Registry,
        routes: Routes,
        *,
        keep: bool = True,
        observer: Observer | None = None,
    ) -> None:
        """Without `keep` (read-only mode), what is fetched is served and not stored; the
        answers are counted by `observer` (the server's metrics)."""
        self.registry = registry
        self.routes = routes
        self.shared = Shared(registry, keep=keep, observer=observer)

    def repository(self, name: str) -> RepositoryService:
        local = self.registry.repository(name)  # NameInvalid first
        route = self.routes.find(name)
        if route is None:
            return local
        return ProxyRepository(local, route, self.shared)

    async def run_expiry(self) -> None:
        """Unlinks expired content for as long as the server runs."""
        await expiry.run(self.registry, self.routes)

    async def close(self) -> None:
        await self.shared.fetches.close()
        await self.shared.manifest_fetches.close()
        for route in self.routes.all:
            await route.upstream.close()

    def describe(self) -> str:
        return "pull-through cache: " + ", ".join(route.describe() for route in self.routes.all)


def ttl_seconds(ttl: Duration | None) -> float | None:
    """distribution's rule: unset is a week, 0 is for ever."""
    if ttl is None:
        return DEFAULT_TTL
    value = seconds(ttl)
    return value if value > 0 else None


def from_config(
    config: Config, registry: Registry, observer: Observer | None = None
) -> PullThrough | None:
    """The cache the `proxy` section describes, or None when it names no upstream. Raises
    ValueError, naming the key, for what moorage does not support."""
    section = config.proxy
    if section.exec:
        raise ValueError(
            "proxy.exec: credential helpers are not supported; give proxy.username and "
            "proxy.passwordfile"
        )
    if section.remotenamespace:
        raise ValueError("proxy.remotenamespace: not supported; map names with proxy.upstreams")
    routes = [
        Route(
            upstream.prefix,
            Upstream(upstream.remoteurl, upstream.username, upstream.password),
            ttl_seconds(upstream.ttl),
        )
        for upstream in section.upstreams
    ]
    if section.remoteurl:
        upstream = Upstream(section.remoteurl, section.username, section.password)
        routes.append(Route("", upstream, ttl_seconds(section.ttl)))
    if not routes:
        return None
    return PullThrough(
        registry,
        Routes(routes),
        keep=not config.storage.maintenance.readonly.enabled,
        observer=observer,
    )
