"""Which names a pull-through cache serves from which upstream: each of moorage's
`proxy.upstreams` covers the names under its prefix (taken off upstream: `hub/library/alpine`
is `library/alpine` there), and distribution's `proxy.remoteurl` every other name, unprefixed.
A name no route covers is an ordinary repository of the registry."""

from __future__ import annotations

from dataclasses import dataclass

from moorage.proxy.upstream import Upstream


@dataclass(frozen=True)
class Route:
    prefix: str  # name components without a trailing "/"; "" covers every name
    upstream: Upstream
    ttl: float | None  # seconds a fetched blob or manifest is kept; None: for ever

    def covers(self, name: str) -> bool:
        return not self.prefix or name.startswith(self.prefix + "/")

    def remote(self, name: str) -> str:
        """The upstream's name for a local name this route covers. Docker Hub keeps its
        official images, named by one component (`alpine`), under `library/`."""
        rest = name[len(self.prefix) + 1 :] if self.prefix else name
        if self.upstream.docker_hub and "/" not in rest:
            return f"library/{rest}"
        return rest

    def describe(self) -> str:
        return f"{self.prefix + '/' if self.prefix else '(every name)'} -> {self.upstream.shown}"


class Routes:
    def __init__(self, routes: list[Route]) -> None:
        """Prefixes do not overlap (the config checks it); at most one route has none."""
        self.all = sorted(routes, key=lambda route: route.prefix == "")  # prefixed ones first

    def find(self, name: str) -> Route | None:
        return next((route for route in self.all if route.covers(name)), None)

    @property
    def shortest_ttl(self) -> float | None:
        ttls = [route.ttl for route in self.all if route.ttl is not None]
        return min(ttls) if ttls else None
