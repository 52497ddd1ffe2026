"""`/v2/<name>/blobs/uploads/`: starting, feeding, checking, finishing and cancelling uploads."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

from aiohttp import web

from moorage.api import upload_state
from moorage.api.access import grant_of
from moorage.api.context import absolute_url, registry, repository, settings
from moorage.api.errors import error_response
from moorage.auth import scopes
from moorage.registry.blobs import BlobInfo
from moorage.registry.digest import DEFAULT_ALGORITHM, Digest
from moorage.registry.errors import (
    DigestInvalid,
    InsufficientStorage,
    NameInvalid,
    RangeInvalid,
)
from moorage.registry.repository import RepositoryService

# `start-end`, as the spec writes it; `bytes start-end` and `bytes=start-end` from some clients.
# Positions have at most 19 digits (int64's): a longer number is a malformed range.
_CONTENT_RANGE = re.compile(r"(?:bytes[ =])?([0-9]{1,19})-([0-9]{1,19})(?:/(?:[0-9]{1,19}|\*))?")


def _upload_headers(
    repo: RepositoryService, request: web.Request, upload_id: str, size: int
) -> dict[str, str]:
    state = upload_state.pack(settings(request).secret, repo.name, upload_id, size)
    path = f"/v2/{repo.name}/blobs/uploads/{upload_id}?{upload_state.PARAMETER}={state}"
    return {
        "Location": absolute_url(request, path),
        # Inclusive end of what is stored; distribution answers 0-0 for an empty upload too.
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
        "Blob-Upload-Session-ID": upload_id,
    }


def _session(request: web.Request) -> tuple[RepositoryService, str]:
    """The repository and upload id of a session URL, whose signed state (when the client
    sent it back) must be genuine."""
    repo = repository(request)
    upload_id = request.match_info["upload_id"]
    token = request.query.get(upload_state.PARAMETER)
    if token is not None:
        upload_state.check(settings(request).secret, token, repo.name, upload_id)
    return repo, upload_id


def _created(repo: RepositoryService, request: web.Request, info: BlobInfo) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "Location": absolute_url(request, f"/v2/{repo.name}/blobs/{info.digest}"),
            "Docker-Content-Digest": str(info.digest),
        },
    )


def _body(request: web.Request) -> AsyncIterator[bytes] | None:
    return request.content.iter_any() if request.body_exists else None


async def start_upload(request: web.Request) -> web.Response:
    repo = repository(request)
    query = request.query

    if "mount" in query:
        mounted = await _mount(request, repo, query["mount"], query.get("from"))
        if mounted is not None:
            return _created(repo, request, mounted)

    if "digest" in query:  # monolithic: the whole blob in this request
        digest = Digest.parse(query["digest"])
        body = _body(request) or _empty()
        return _created(repo, request, await repo.uploads.upload(digest, body))

    upload_id = await repo.uploads.start(query.get("digest-algorithm", DEFAULT_ALGORITHM))
    return web.Response(status=202, headers=_upload_headers(repo, request, upload_id, 0))


async def _mount(
    request: web.Request, repo: RepositoryService, digest_text: str, source_name: str | None
) -> BlobInfo | None:
    """Mounts when the arguments name a blob the registry has and, under access control, one
    the caller may pull from the named source; None means: upload instead. Under access control
    a mount must name its source, so it reveals nothing of repositories the caller cannot read."""
    digest = Digest.parse_or_none(digest_text)
    if digest is None:
        return None
    grant = grant_of(request)
    if grant is not None and not (
        source_name and grant.allows(scopes.REPOSITORY, source_name, scopes.PULL)
    ):
        return None
    try:
        source = registry(request).repository(source_name) if source_name else None
    except NameInvalid:
        return None
    return await repo.blobs.mount(digest, source.blobs if source else None)


async def _empty() -> AsyncIterator[bytes]:
    return
    yield


async def upload_status(request: web.Request) -> web.Response:
    repo, upload_id = _session(request)
    size = await repo.uploads.size(upload_id)
    return web.Response(status=204, headers=_upload_headers(repo, request, upload_id, size))


async def patch_upload(request: web.Request) -> web.Response:
    repo, upload_id = _session(request)
    try:
        start, length = await _content_range(request, repo, upload_id)
        size = await repo.uploads.append(
            upload_id, request.content.iter_any(), start=start, length=length
        )
    except RangeInvalid as exc:
        return error_response(exc, _upload_headers(repo, request, upload_id, exc.size))
    except InsufficientStorage as exc:  # the session keeps what was written: say how much
        kept = await repo.uploads.size(upload_id)
        return error_response(exc, _upload_headers(repo, request, upload_id, kept))
    return web.Response(status=202, headers=_upload_headers(repo, request, upload_id, size))


async def _content_range(
    request: web.Request, repo: RepositoryService, upload_id: str
) -> tuple[int | None, int | None]:
    """The chunk's start and length from Content-Range (None, None without one). A malformed
    range, or one that disagrees with Content-Length, raises RangeInvalid."""
    header = request.headers.get("Content-Range")
    if header is None:
        return None, request.content_length
    match = _CONTENT_RANGE.fullmatch(header.strip())
    if match is None or int(match.group(2)) < int(match.group(1)):
        size = await repo.uploads.size(upload_id)
        shown = header if len(header) <= 80 else header[:80] + "..."
        raise RangeInvalid(f"malformed Content-Range {shown!r}", size=size)
    start, end = int(match.group(1)), int(match.group(2))
    length = end - start + 1
    if request.content_length is not None and request.content_length != length:
        size = await repo.uploads.size(upload_id)
        raise RangeInvalid(
            f"Content-Range covers {length} bytes, Content-Length says {request.content_length}",
            size=size,
        )
    return start, length


async def finish_upload(request: web.Request) -> web.Response:
    repo, upload_id = _session(request)
    if "digest" not in request.query:
        raise DigestInvalid("the digest query parameter is required to finish an upload")
    digest = Digest.parse(request.query["digest"])
    body = _body(request)
    try:
        if body is not None and "Content-Range" in request.headers:
            start, length = await _content_range(request, repo, upload_id)
            await repo.uploads.append(upload_id, body, start=start, length=length)
            body = None
        info = await repo.uploads.commit(upload_id, digest, body)
    except RangeInvalid as exc:
        return error_response(exc, _upload_headers(repo, request, upload_id, exc.size))
    return _created(repo, request, info)


async def cancel_upload(request: web.Request) -> web.Response:
    repo, upload_id = _session(request)
    await repo.uploads.cancel(upload_id)
    return web.Response(status=204)
