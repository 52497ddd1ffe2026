"""`/v2/<name>/blobs/<digest>`: GET, HEAD and DELETE of blobs."""

from __future__ import annotations

import contextlib
import os

from aiohttp import web

from moorage.api.context import client_ip, registry, repository, settings
from moorage.api.responses import FileResponse, parse_range, stream_arriving, stream_chunks
from moorage.registry.blobs import BlobInfo
from moorage.registry.digest import Digest
from moorage.registry.errors import BlobUnknown, Unavailable

CACHE_FOREVER = "max-age=31536000"


async def get_blob(request: web.Request) -> web.StreamResponse:
    repo = repository(request)
    digest = Digest.parse(request.match_info["digest"])
    etag = f'"{digest}"'
    unchanged = etag in request.headers.get("If-None-Match", "")
    opened = await repo.blobs.open(digest, content=request.method == "GET" and not unchanged)
    arriving, info = (None, opened) if isinstance(opened, BlobInfo) else (opened, opened.info)
    headers = {
        "Docker-Content-Digest": str(digest),
        "ETag": etag,
        "Accept-Ranges": "bytes",
        "Cache-Control": CACHE_FOREVER,
        "Content-Type": "application/octet-stream",
    }
    if unchanged:
        return web.Response(status=304, headers=headers)

    selected = parse_range(request.headers.get("Range"), info.size)
    status, first, count = 200, 0, info.size
    if selected is not None:
        first, last = selected
        status, count = 206, last - first + 1
        headers["Content-Range"] = f"bytes {first}-{last}/{info.size}"

    if request.method == "HEAD":
        headers["Content-Length"] = str(count)
        return web.Response(status=status, headers=headers)

    if arriving is not None:
        return await stream_arriving(request, arriving, first, count, status, headers)
    store = registry(request).blobs
    if settings(request).redirect and (
        url := await store.redirect_url(info.stored, client_ip(request))
    ):
        return web.Response(status=307, headers={"Location": url, **headers})
    local = store.local_file(info.stored)
    if local is not None:
        if not os.path.exists(local):  # collected by a process whose cache is not this one's
            with contextlib.suppress(Unavailable):
                await repo.blobs.forget(digest)
                await store.forget(info.stored)
            raise BlobUnknown(detail={"digest": str(digest)})
        return FileResponse(local, first, count, status, headers)
    return await stream_chunks(request, store.reader(info.stored, first), count, status, headers)


async def delete_blob(request: web.Request) -> web.Response:
    repo = repository(request)
    digest = Digest.parse(request.match_info["digest"])
    await repo.blobs.delete(digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest)})
