"""Access control at the API boundary: the scopes each route needs, and the middleware that
asks the configured access controller for them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

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


def authorize(controller: AccessController) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.match_info.route.name in PUBLIC_ROUTES:
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
