"""`/v2/<name>/manifests/<reference>`: GET, HEAD, PUT and DELETE by tag or digest."""

from __future__ import annotations

import functools

from aiohttp import web

from moorage.api.context import absolute_url, registry, repository
from moorage.registry import manifests as schema
from moorage.registry.errors import ManifestTooLarge, ManifestUnknown
from moorage.registry.names import parse_reference


def accepts(media_type: str, accept_headers: list[str]) -> bool:
    """Whether the client's Accept allows the media type. A client that names no manifest type
    at all (no Accept, `*/*`, `application/json`) gets what is stored; one that lists manifest
    types gets only those."""
    listed = _listed(tuple(accept_headers))
    if "*/*" in listed or media_type in listed:
        return True
    return not listed & _MEDIA_TYPES


_MEDIA_TYPES = frozenset(schema.MEDIA_TYPES)


@functools.lru_cache(maxsize=256)  # a client sends the same Accept with every request
def _listed(accept_headers: tuple[str, ...]) -> frozenset[str]:
    return frozenset(
        part.split(";")[0].strip().lower()
        for header in accept_headers
        for part in header.split(",")
    )


async def get_manifest(request: web.Request) -> web.Response:
    repo = repository(request)
    reference = request.match_info["reference"]
    digest = await repo.manifests.resolve(reference)
    etag = f'"{digest}"'
    if etag in request.headers.get("If-None-Match", ""):  # as distribution: no pull happened
        return web.Response(
            status=304, headers={"Docker-Content-Digest": str(digest), "ETag": etag}
        )
    stored = await repo.manifests.get(reference, digest)
    if not accepts(stored.media_type, request.headers.getall("Accept", [])):
        raise ManifestUnknown(
            f"manifest is of type {stored.media_type}, which the Accept header does not allow",
            detail={"digest": str(stored.digest), "mediaType": stored.media_type},
        )
    pull_log = registry(request).pull_log
    if pull_log is not None and request.method == "GET":  # a HEAD only asks what it is
        named = parse_reference(reference)
        pull_log.note(repo.name, named if isinstance(named, str) else None, stored.digest)
    headers = {
        "Docker-Content-Digest": str(stored.digest),
        "ETag": etag,
        "Content-Type": stored.media_type,
    }
    if request.method == "HEAD":
        headers["Content-Length"] = str(len(stored.payload))
        return web.Response(headers=headers)
    return web.Response(body=stored.payload, headers=headers)


async def _read_manifest(request: web.Request) -> bytes:
    """The request body, up to the manifest size limit (ManifestTooLarge beyond it)."""
    limit = schema.MAX_MANIFEST_SIZE
    if request.content_length is not None and request.content_length > limit:
        raise ManifestTooLarge(f"manifest larger than {limit} bytes")
    body = bytearray()
    async for chunk in request.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise ManifestTooLarge(f"manifest larger than {limit} bytes")
    return bytes(body)


async def put_manifest(request: web.Request) -> web.Response:
    repo = repository(request)
    reference = request.match_info["reference"]
    payload = await _read_manifest(request)
    result = await repo.manifests.put(
        reference, payload, request.headers.get("Content-Type"), request.query.getall("tag", [])
    )
    headers = {
        "Location": absolute_url(request, f"/v2/{repo.name}/manifests/{result.digest}"),
        "Docker-Content-Digest": str(result.digest),
    }
    if result.manifest.subject is not None:
        headers["OCI-Subject"] = str(result.manifest.subject.digest)
    if request.query.getall("tag", []):
        headers["OCI-Tag"] = ",".join(result.tags)
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request) -> web.Response:
    repo = repository(request)
    await repo.manifests.delete(request.match_info["reference"])
    return web.Response(status=202)
