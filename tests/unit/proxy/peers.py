"""A small registry peer for the cache's unit tests: an aiohttp server in the test's loop, on a
loopback port, serving manifests, blobs and tags lists from dictionaries, behind no
authentication, Basic, or a Bearer token flow of its own; it counts what it is asked, and can
hold a blob's body midway, cut it, or send other bytes than asked."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.test_utils import TestServer

MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


@dataclass
class Peer:
    auth: str = ""  # "", "basic" or "bearer"
    users: dict[str, str] = field(default_factory=lambda: {"cache": "pw"})
    manifests: dict[tuple[str, str], bytes] = field(default_factory=dict)  # (name, ref)
    blobs: dict[str, bytes] = field(default_factory=dict)  # digest -> content
    tags: dict[str, list[str]] = field(default_factory=dict)
    page: int = 0  # tags per page; 0: all in one
    link_host: str = ""  # the scheme and host the next page's Link names, when set
    status: int = 0  # answer every API request with this status instead, when set
    hold_after: int | None = None  # bytes of a blob body sent before waiting on `resume`
    resume: asyncio.Event = field(default_factory=asyncio.Event)
    held: asyncio.Event = field(default_factory=asyncio.Event)
    cut_after: int | None = None  # bytes of a blob body sent before the connection is cut
    corrupt: bool = False  # send other bytes of the right length
    asked: Counter[str] = field(default_factory=Counter)  # "METHOD path" -> count
    token_requests: list[dict[str, str]] = field(default_factory=list)
    valid_tokens: set[str] = field(default_factory=set)
    url: str = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/token", self.token)
        app.router.add_route("*", "/v2/{path:.*}", self.api)
        return app

    async def token(self, request: web.Request) -> web.Response:
        query = dict(request.query)
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
            if self.users.get(user) != password:
                return web.Response(status=401)
            query["user"] = user
        self.token_requests.append(query)
        token = secrets.token_hex(8)
        self.valid_tokens.add(token)
        return web.json_response({"token": token, "expires_in": 300})

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if self.auth == "basic":
            expected = {
                "Basic " + base64.b64encode(f"{u}:{p}".encode()).decode()
                for u, p in self.users.items()
            }
            return header in expected
        if self.auth == "bearer":
            return header.startswith("Bearer ") and header[7:] in self.valid_tokens
        return True

    def _challenge(self, name: str) -> str:
        if self.auth == "basic":
            return 'Basic realm="peer"'
        return f'Bearer realm="{self.url}/token",service="peer",scope="repository:{name}:pull"'

    async def api(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.asked[f"{request.method} /v2/{path}"] += 1
        name, kind, reference = _split(path)
        if not self._authorized(request):
            return web.Response(status=401, headers={"WWW-Authenticate": self._challenge(name)})
        if self.status:
            return web.Response(status=self.status, headers={"Retry-After": "7"})
        if kind == "manifests" and (name, reference) in self.manifests:
            payload = self.manifests[(name, reference)]
            digest = "sha256:" + hashlib.sha256(payload).hexdigest()
            headers = {"Docker-Content-Digest": digest, "Content-Type": MANIFEST_TYPE}
            if request.method == "HEAD":
                return web.Response(headers={**headers, "Content-Length": str(len(payload))})
            return web.Response(body=payload, headers=headers)
        if kind == "blobs" and reference in self.blobs:
            return await self._blob(request, self.blobs[reference])
        if kind == "tags" and name in self.tags:
            return self._tags(request, name)
        return web.Response(status=404)

    async def _blob(self, request: web.Request, content: bytes) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(len(content))})
        if request.method == "HEAD":
            return response
        await response.prepare(request)
        body = bytes(b ^ 0xFF for b in content) if self.corrupt else content
        sent = 0
        for start in range(0, len(body), 64 * 1024):
            piece = body[start : start + 64 * 1024]
            if self.cut_after is not None and sent + len(piece) > self.cut_after:
                assert request.transport is not None
                request.transport.abort()
                return response
            if self.hold_after is not None and sent + len(piece) > self.hold_after:
                self.held.set()
                await self.resume.wait()
            await response.write(piece)
            sent += len(piece)
        await response.write_eof()
        return response

    def _tags(self, request: web.Request, name: str) -> web.Response:
        tags = sorted(self.tags[name], key=str)
        last = request.query.get("last")
        if last:
            tags = [tag for tag in tags if str(tag) > last]
        headers = {}
        if self.page and len(tags) > self.page:
            tags = tags[: self.page]
            target = f"{self.link_host}/v2/{name}/tags/list?n={self.page}&last={tags[-1]}"
            headers["Link"] = f'<{target}>; rel="next"'
        return web.Response(
            body=json.dumps({"name": name, "tags": tags}).encode(),
            headers={**headers, "Content-Type": "application/json"},
        )


def _split(path: str) -> tuple[str, str, str]:
    """`<name>/<kind>/<reference>` (kind: manifests, blobs) or `<name>/tags/list`."""
    for kind in ("manifests", "blobs", "tags"):
        name, found, rest = path.rpartition(f"/{kind}/")
        if found:
            return name, kind, rest
    return path, "", ""


@contextlib.asynccontextmanager
async def serving(peer: Peer) -> AsyncIterator[Peer]:
    server = TestServer(peer.app(), host="127.0.0.1")
    await server.start_server()
    peer.url = str(server.make_url("")).rstrip("/")
    try:
        yield peer
    finally:
        peer.resume.set()
        await server.close()
