"""Listings: `/v2/<name>/tags/list`, `/v2/_catalog` and `/v2/<name>/referrers/<digest>`."""

from __future__ import annotations

import bisect
import json
import re
from urllib.parse import urlencode

from aiohttp import web

from moorage.api.access import grant_of
from moorage.api.context import ACCESS, api_path, registry, repository, settings
from moorage.registry import manifests as schema
from moorage.registry.digest import Digest
from moorage.registry.errors import NameUnknown, PaginationInvalid

_COUNT = re.compile(r"[0-9]{1,18}")


def _page(
    request: web.Request, items: list[str], path: str, default_n: int | None, max_n: int | None
) -> tuple[list[str], dict[str, str]]:
    """One page of a sorted list after `last`, at most `n` long, and the Link header to the
    next page when there is one."""
    n_text = request.query.get("n")
    if n_text is None:
        n = default_n
    elif _COUNT.fullmatch(n_text):
        n = int(n_text)
    else:
        raise PaginationInvalid(
            "n must be a non-negative integer (ASCII digits, at most 18)", detail={"n": n_text}
        )
    if n is not None and max_n is not None:
        n = min(n, max_n)
    last = request.query.get("last")
    start = bisect.bisect_right(items, last) if last else 0
    page = items[start:] if n is None else items[start : start + n]
    headers = {}
    if n and start + n < len(items):
        query = urlencode({"n": n, "last": page[-1]})
        headers["Link"] = f'<{api_path(request, path)}?{query}>; rel="next"'
    return page, headers


async def list_tags(request: web.Request) -> web.Response:
    repo = repository(request)
    if not await repo.exists():
        raise NameUnknown(detail={"name": repo.name})
    tags = await repo.tags.all()
    page, headers = _page(request, tags, f"/v2/{repo.name}/tags/list", None, None)
    return web.json_response({"name": repo.name, "tags": page}, headers=headers)


async def catalog(request: web.Request) -> web.Response:
    limit = settings(request).catalog_max_entries
    names = await registry(request).repositories()
    access = request.app.get(ACCESS)
    grant = grant_of(request)
    if access is not None and grant is not None:
        names = access.visible(grant, names)
    page, headers = _page(request, names, "/v2/_catalog", limit, limit)
    return web.json_response({"repositories": page}, headers=headers)


async def referrers(request: web.Request) -> web.Response:
    repo = repository(request)
    subject = Digest.parse(request.match_info["digest"])
    artifact_type = request.query.get("artifactType") or None  # an empty filter is none
    descriptors = await repo.manifests.referrer_descriptors(subject, artifact_type)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type else {}
    index = {
        "schemaVersion": 2,
        "mediaType": schema.OCI_INDEX,
        "manifests": [descriptor.to_json() for descriptor in descriptors],
    }
    # Bytes, not json_response: that appends `; charset=utf-8`, and the spec (and its conformance
    # suite) wants the Content-Type to be exactly the index media type.
    return web.Response(
        body=json.dumps(index).encode(), headers=headers, content_type=schema.OCI_INDEX
    )
