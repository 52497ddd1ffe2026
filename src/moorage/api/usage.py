"""`GET /v2/_moorage/usage`: what each repository holds, for the web UI and scripts.

The distribution spec leaves `/v2/_<namespace>/...` to extensions; moorage's are under
`_moorage`. The answer is the last computed usage (storage.maintenance.usage), the same the
debug listener's /metrics shows:

    {"repositories": [{"name", "exclusive", "shared", "total", "quota"}, ...],
     "total": bytes or null, "computed": RFC 3339, "duration": seconds}

Under access control the route needs the catalog scope (`registry:catalog:*`), as `_catalog`
does, and lists the repositories `_catalog` would list the caller; the registry's `total` is
given only to a caller who may see every repository (null otherwise), since it tells of the
others. `quota` is the repository's limit in bytes, or null.
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from moorage.api.access import grant_of
from moorage.api.context import ACCESS, QUOTAS, USAGE
from moorage.registry.errors import Unavailable

READY_WAIT = 5.0  # seconds a request waits for the first computation


async def usage(request: web.Request) -> web.Response:
    tracker = request.app[USAGE]
    try:
        async with asyncio.timeout(READY_WAIT):
            current = await tracker.ready()
    except TimeoutError:
        raise Unavailable("repository usage is not computed yet; retry shortly") from None
    names = list(current.repositories)
    access = request.app.get(ACCESS)
    grant = grant_of(request)
    visible = access.visible(grant, names) if access is not None and grant is not None else names
    quotas = request.app.get(QUOTAS)
    repositories = []
    for name in visible:
        limit = quotas.limit_for(name) if quotas is not None else None
        repositories.append({**current.of(name).to_json(), "quota": limit and limit.size})
    return web.json_response(
        {
            "repositories": repositories,
            "total": current.total if len(visible) == len(names) else None,
            "computed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(current.started)),
            "duration": round(current.duration, 3),
        }
    )
