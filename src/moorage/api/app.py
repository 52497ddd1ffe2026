"""The application: routes, and the middleware every request passes through."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Middleware

from moorage.api import blobs, listing, manifests, uploads
from moorage.api.base import version_check
from moorage.api.context import REGISTRY, SETTINGS, Settings
from moorage.api.errors import EndpointNotFound, InternalError, MethodNotAllowed, error_response
from moorage.registry.errors import RegistryError, Unsupported
from moorage.registry.repository import Registry

log = logging.getLogger("moorage.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_READ_METHODS = ("GET", "HEAD", "OPTIONS")
# Repository names contain slashes; the name pattern is permissive here and checked by the
# grammar in the handler, so a bad name is NAME_INVALID rather than an unknown route.
_NAME = "{name:.+}"


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
    except web.HTTPException:
        raise
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return error_response(InternalError())


def read_only(enabled: bool) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if enabled and request.method not in _READ_METHODS and request.path.startswith("/v2/"):
            raise Unsupported("the registry is in read-only mode")
        return await handler(request)

    return middleware


async def _api_version_header(request: web.Request, response: web.StreamResponse) -> None:
    response.headers["Docker-Distribution-API-Version"] = "registry/2.0"


def create_app(registry: Registry, settings: Settings) -> web.Application:
    app = web.Application(middlewares=[translate_errors, read_only(settings.readonly)])
    app[REGISTRY] = registry
    app[SETTINGS] = settings
    app.on_response_prepare.append(_api_version_header)

    router = app.router
    router.add_get("/v2/", version_check)
    router.add_get("/v2/_catalog", listing.catalog)

    uploads_path = f"/v2/{_NAME}/blobs/uploads/"
    router.add_post(uploads_path, uploads.start_upload)
    session = uploads_path + "{upload_id}"
    router.add_get(session, uploads.upload_status)
    router.add_patch(session, uploads.patch_upload)
    router.add_put(session, uploads.finish_upload)
    router.add_delete(session, uploads.cancel_upload)

    blob = f"/v2/{_NAME}/blobs/{{digest}}"
    router.add_get(blob, blobs.get_blob)  # HEAD too
    router.add_delete(blob, blobs.delete_blob)

    manifest = f"/v2/{_NAME}/manifests/{{reference}}"
    router.add_get(manifest, manifests.get_manifest)
    router.add_put(manifest, manifests.put_manifest)
    router.add_delete(manifest, manifests.delete_manifest)

    router.add_get(f"/v2/{_NAME}/tags/list", listing.list_tags)
    router.add_get(f"/v2/{_NAME}/referrers/{{digest}}", listing.referrers)
    return app
