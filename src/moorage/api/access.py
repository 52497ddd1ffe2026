"""Access control at the API boundary: the scopes each route needs, the middleware that asks
the configured access controller for them, and CORS preflights from allowed origins, answered
before it."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Collection

from aiohttp import web
from aiohttp.typedefs import Middleware

from moorage.auth import scopes
from moorage.auth.controllers import AccessController
from moorage.auth.scopes import Grant, Scope

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PUBLIC_ROUTES = ("token",)  # the token endpoint authenticates by itself

# route name -> method -> repository actions needed; routes not listed need none
_ACTIONS: dict[str, dict[str, tuple[str, ...]]] = {
    "uploads": {"*": (scopes.PULL, scopes.PUSH)},
    "session": {"*": (scopes.PULL, scopes.PUSH)},
    "blob": {"GET": (scopes.PULL,), "HEAD": (scopes.PULL,), "DELETE": (scopes.DELETE,)},
    "manifest": {
        "GET": (scopes.PULL,),
        "HEAD": (scopes.PULL,),
        "PUT": (scopes.PULL, scopes.PUSH),
        "DELETE": (scopes.DELETE,),
    },
    "tags": {"*": (scopes.PULL,)},
    "referrers": {"*": (scopes.PULL,)},
}


def needed(request: web.Request) -> list[Scope]:
    """The scopes a request must be granted, from its route and method (distribution's rules:
    pushing needs pull too; the catalog needs `registry:catalog:*`, and so does moorage's usage
    listing, which shows what the catalog shows)."""
    route = request.match_info.route.name or ""
    if route in ("catalog", "usage"):
        return [scopes.CATALOG]
    by_method = _ACTIONS.get(route)
    if by_method is None:
        return []
    actions = by_method.get(request.method) or by_method.get("*") or ()
    name = request.match_info.get("name", "")
    return [scopes.repository(name, *actions)] if actions else []


def authorize(controller: AccessController, public: Collection[str] = PUBLIC_ROUTES) -> Middleware:
    """`public`: the names of routes that authenticate by themselves (the token endpoint, the
    web UI's pages)."""
    public = frozenset(public)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route.name in public:
            return await handler(request)
        grant = await controller.authorize(request, needed(request))
        request["grant"] = grant
        request["user"] = grant.user or "-"
        return await handler(request)

    return middleware


def grant_of(request: web.Request) -> Grant | None:
    """The request's grant; None when no access control is configured."""
    grant: Grant | None = request.get("grant")
    return grant


CORS_METHODS = "GET, HEAD, POST, PUT, PATCH, DELETE"
# What a page's script may read of an answer besides the basic headers.
CORS_EXPOSED = (
    "Docker-Content-Digest, Docker-Distribution-API-Version, Docker-Upload-UUID, Link, Location, "
    "Range, WWW-Authenticate, OCI-Subject, OCI-Filters-Applied, X-Request-Id"
)
CORS_MAX_AGE = "600"
_HEADER_NAMES = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+(?:\s*,\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)*")


def allowed_origin(origins: frozenset[str], origin: str | None) -> bool:
    return origin is not None and (origin in origins or "*" in origins)


def preflights(origins: frozenset[str]) -> Middleware:
    """Answers CORS preflights (OPTIONS with `Origin` and `Access-Control-Request-Method`) from
    the allowed origins before authorization: browsers send them without credentials, so a 401
    would stop every request of an external UI (distribution #4458). A preflight from any other
    origin goes on as any request does (a 401, or no route)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method == "OPTIONS":
            origin = request.headers.get("Origin")
            method = request.headers.get("Access-Control-Request-Method")
            if method is not None and allowed_origin(origins, origin):
                assert origin is not None
                headers = {
                    "Access-Control-Allow-Origin": origin,
                    "Access-Control-Allow-Methods": CORS_METHODS,
                    "Access-Control-Allow-Credentials": "true",
                    "Access-Control-Max-Age": CORS_MAX_AGE,
                    "Vary": "Origin",
                }
                asked = request.headers.get("Access-Control-Request-Headers", "").strip()
                if asked and _HEADER_NAMES.fullmatch(asked):
                    headers["Access-Control-Allow-Headers"] = asked
                return web.Response(status=204, headers=headers)
        return await handler(request)

    return middleware


def cors_headers(origins: frozenset[str]) -> Callable[..., Awaitable[None]]:
    """A response hook: an answer to a request from an allowed origin says the page may read it
    (credentials included) and which headers."""

    async def add(request: web.Request, response: web.StreamResponse) -> None:
        origin = request.headers.get("Origin")
        if (
            allowed_origin(origins, origin)
            and "Access-Control-Allow-Origin" not in response.headers
        ):
            assert origin is not None
            response.headers["Access-Control-Allow-Origin"] = origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
            response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED
            response.headers.add("Vary", "Origin")

    return add
