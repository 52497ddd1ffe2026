"""The application: routes, and the middleware every request passes through."""

from __future__ import annotations

import itertools
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from typing import Protocol

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from moorage.api import blobs, listing, manifests, uploads
from moorage.api import usage as usage_view
from moorage.api.access import PUBLIC_ROUTES, authorize, cors_headers, preflights
from moorage.api.base import version_check
from moorage.api.context import (
    ACCESS,
    NAMESPACE,
    QUOTAS,
    REGISTRY,
    SETTINGS,
    TRUSTED,
    USAGE,
    RepositoryWrapper,
    RequestContexts,
    Settings,
    WrappedNamespace,
    registry,
    trusted_checker,
)
from moorage.api.errors import (
    EndpointNotFound,
    InternalError,
    MethodNotAllowed,
    RequestRefused,
    RequestTooLarge,
    ServiceUnavailable,
    error_response,
)
from moorage.auth.controllers import AccessController, Builtin
from moorage.auth.tokenserver import token_handlers
from moorage.health import Health
from moorage.lifecycle.quotas import Quotas
from moorage.lifecycle.usage import UsageTracker
from moorage.metrics import Metrics
from moorage.registry.errors import RegistryError, Unsupported
from moorage.registry.repository import Namespace, Registry

log = logging.getLogger("moorage.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_READ_METHODS = ("GET", "HEAD", "OPTIONS")
# Repository names contain slashes; the name pattern is permissive here (any character, a
# newline too) and checked by the grammar before anything else, so a bad name is NAME_INVALID
# rather than an unknown route.
_NAME = r"{name:[\s\S]+}"


@web.middleware
async def translate_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Domain errors become the OCI envelope; anything unexpected is logged and answered 500."""
    try:
        return await handler(request)
    except RegistryError as exc:
        return error_response(exc)
    except web.HTTPNotFound:
        return error_response(EndpointNotFound(detail={"path": request.path}))
    except web.HTTPMethodNotAllowed:
        return error_response(MethodNotAllowed(detail={"method": request.method}))
    except (ConnectionError, aiohttp.ClientError):
        raise  # the client went away: nothing to answer
    except web.HTTPRequestEntityTooLarge:
        return error_response(RequestTooLarge())
    except web.HTTPClientError as exc:
        return error_response(RequestRefused(exc.reason))
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(InternalError())


@web.middleware
async def valid_names(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Refuses a repository name outside the grammar (NAME_INVALID) before anything else sees
    it: authorization, whose challenge names the repository, and every handler."""
    name = request.match_info.get("name")
    if name is not None:
        registry(request).repository(name)  # NameInvalid; a valid name's view is kept for reuse
    return await handler(request)


def read_only(enabled: bool) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if enabled and request.method not in _READ_METHODS and "/v2/" in request.path:
            raise Unsupported("the registry is in read-only mode")
        return await handler(request)

    return middleware


def _response_headers(configured: dict[str, list[str]]) -> Callable[..., Awaitable[None]]:
    async def add(request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Docker-Distribution-API-Version"] = "registry/2.0"
        for name, values in configured.items():
            if name not in response.headers:
                for value in values:
                    response.headers.add(name, value)

    return add


# A client's X-Request-Id is kept when it is visible ASCII of a sane length: it is echoed in a
# header and written to the log.
_CLIENT_REQUEST_ID = re.compile(r"[\x21-\x7e]{1,128}")


def request_ids() -> Middleware:
    """Names each request (the client's X-Request-Id, or a fresh one) and its route, for the
    logs. Fresh ids are a random prefix made here, which tells this app's ids from other
    workers' and replicas', and a counter: cheaper than a uuid4 per request."""
    prefix = secrets.token_hex(6)
    numbers = itertools.count(1)

    @web.middleware
    async def request_id(request: web.Request, handler: Handler) -> web.StreamResponse:
        given = request.headers.get("X-Request-Id")
        request["request_id"] = (
            given
            if given is not None and _CLIENT_REQUEST_ID.fullmatch(given)
            else f"{prefix}-{next(numbers):x}"
        )
        resource = request.match_info.route.resource
        request["route"] = resource.canonical if resource is not None else "unmatched"
        response = await handler(request)
        response.headers["X-Request-Id"] = request["request_id"]
        return response

    return request_id


def healthy_only(health: Health) -> Middleware:
    """Answers 503 while the storage health check fails, as distribution does."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not health.ok:
            raise ServiceUnavailable(detail=health.errors)
        return await handler(request)

    return middleware


class Pages(Protocol):
    """An application served beside the API on its listener (the web UI), at `path` (under
    the prefix, no trailing slash). It authenticates by itself, so its routes (every one
    named) pass the access middleware; the API's other middleware runs for it too."""

    path: str
    app: web.Application


def create_app(
    registry: Registry,
    settings: Settings,
    *,
    metrics: Metrics | None = None,
    health: Health | None = None,
    access: AccessController | None = None,
    usage: UsageTracker | None = None,
    quotas: Quotas | None = None,
    namespace: Namespace | None = None,
    wrapper: RepositoryWrapper | None = None,
    pages: Pages | None = None,
) -> web.Application:
    """The API over `registry`. Repositories are served through `namespace` when given (a
    pull-through cache over the registry), each request's wrapped by `wrapper` when given (the
    events of moorage.notifications)."""
    middlewares: list[Middleware] = [request_ids()]
    if metrics is not None:
        middlewares.append(metrics.middleware())
    if settings.cors_origins:
        middlewares.append(preflights(settings.cors_origins))
    middlewares += [translate_errors, valid_names]
    if health is not None:
        middlewares.append(healthy_only(health))
    if access is not None:
        public = set(PUBLIC_ROUTES)
        if pages is not None:
            public.update(pages.app.router.named_resources())
        middlewares.append(authorize(access, public))
    if settings.readonly:
        middlewares.append(read_only(settings.readonly))
    app = web.Application(middlewares=middlewares)
    app[REGISTRY] = registry
    served: Namespace = registry if namespace is None else namespace
    if wrapper is not None:
        served = WrappedNamespace(served, wrapper, RequestContexts())
    app[NAMESPACE] = served
    app[SETTINGS] = settings
    app[TRUSTED] = trusted_checker(settings)
    if access is not None:
        app[ACCESS] = access
    if usage is not None:
        app[USAGE] = usage
    if quotas is not None:
        app[QUOTAS] = quotas
    if settings.cors_origins:
        app.on_response_prepare.append(cors_headers(settings.cors_origins))
    app.on_response_prepare.append(_response_headers(settings.headers))

    # Route names say what access a request needs (moorage.api.access).
    router = app.router
    v2 = settings.prefix + "/v2"
    router.add_get(f"{v2}/", version_check, name="base")
    router.add_get(f"{v2}/_catalog", listing.catalog, name="catalog")
    if usage is not None:  # moorage's extensions: /v2/_moorage/... (see api/usage.py)
        router.add_get(f"{v2}/_moorage/usage", usage_view.usage, name="usage")

    uploads_path = f"{v2}/{_NAME}/blobs/uploads/"
    router.add_post(uploads_path, uploads.start_upload, name="uploads")
    session = router.add_resource(uploads_path + "{upload_id}", name="session")
    session.add_route("GET", uploads.upload_status)
    session.add_route("PATCH", uploads.patch_upload)
    session.add_route("PUT", uploads.finish_upload)
    session.add_route("DELETE", uploads.cancel_upload)

    blob = router.add_resource(f"{v2}/{_NAME}/blobs/{{digest}}", name="blob")
    blob.add_route("GET", blobs.get_blob)
    blob.add_route("HEAD", blobs.get_blob)
    blob.add_route("DELETE", blobs.delete_blob)

    manifest = router.add_resource(f"{v2}/{_NAME}/manifests/{{reference}}", name="manifest")
    manifest.add_route("GET", manifests.get_manifest)
    manifest.add_route("HEAD", manifests.get_manifest)
    manifest.add_route("PUT", manifests.put_manifest)
    manifest.add_route("DELETE", manifests.delete_manifest)

    router.add_get(f"{v2}/{_NAME}/tags/list", listing.list_tags, name="tags")
    router.add_get(f"{v2}/{_NAME}/referrers/{{digest}}", listing.referrers, name="referrers")

    if isinstance(access, Builtin):
        get_token, post_token = token_handlers(access)
        token = router.add_resource(f"{settings.prefix}/auth/token", name="token")
        token.add_route("GET", get_token)
        token.add_route("POST", post_token)
    if pages is not None:
        pages.app[SETTINGS] = settings  # for absolute_url
        app.add_subapp(pages.path, pages.app)
    return app
