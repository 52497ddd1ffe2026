"""The client of one upstream registry: manifests, blobs and tags of its repositories, over
aiohttp's client (connections kept and reused), authenticated as the upstream asks (Basic, or
Bearer tokens from its token server, one per repository scope).

Every answer is translated here, at the boundary, into the domain's errors: what the upstream
does not have (or will not show the cache's credentials) is the caller's `missing` error, a
rate limit is TooManyRequests with the upstream's Retry-After, and anything else that goes wrong
(no connection, a timeout, a 5xx, an answer that breaks the protocol) is Unavailable.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from urllib.parse import urljoin, urlsplit

import aiohttp

from moorage import __version__
from moorage.auth.errors import TooManyRequests
from moorage.proxy.challenges import BASIC, Challenge, Tokens, basic_header, parse_challenge
from moorage.registry import manifests as schema
from moorage.registry.digest import Digest
from moorage.registry.errors import RegistryError, Unavailable
from moorage.registry.names import is_tag

log = logging.getLogger("moorage.proxy")

CONNECT_TIMEOUT = 10.0  # seconds to open a connection
READ_TIMEOUT = 60.0  # seconds without a byte from the upstream before a transfer is given up
SMALL_TIMEOUT = 60.0  # seconds for a whole request that is not a blob body
ACCEPT = ", ".join(schema.MEDIA_TYPES)
MAX_TAGS_PAGE = 16 << 20  # bytes of one tags list page
MAX_TAGS_PAGES = 100
TAGS_PAGE = 1000
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, OSError, ValueError)


class Upstream:
    """One upstream registry, at `url` (its API under `url` + `/v2/`)."""

    def __init__(self, url: str, username: str = "", password: str = "") -> None:
        self.url = url.rstrip("/")
        self.shown = self.url  # for messages: the URL holds no credentials
        self.username = username
        self.password = password
        self.docker_hub = is_docker_hub(url)
        self._session: aiohttp.ClientSession | None = None
        self._challenge: Challenge | None = None
        self._tokens = Tokens()
        self._down = False

    def session(self) -> aiohttp.ClientSession:
        """The connection pool, made on first use in the running loop (workers fork first)."""
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=_transfer_timeout(),
                headers={"User-Agent": f"moorage/{__version__}", "Accept-Encoding": "identity"},
                trust_env=True,  # HTTPS_PROXY and NO_PROXY, as other registry clients honour
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # what the cache asks

    async def manifest_digest(
        self, remote: str, tag: str, missing: type[RegistryError]
    ) -> Digest | None:
        """The digest `remote:tag` points at upstream (a HEAD); None when the upstream does
        not say (its answer has no Docker-Content-Digest)."""
        response = await self.request(
            "HEAD", f"/v2/{remote}/manifests/{tag}", remote, missing, {"Accept": ACCEPT}
        )
        response.release()
        return Digest.parse_or_none(response.headers.get("Docker-Content-Digest", ""))

    async def manifest(
        self, remote: str, reference: str, missing: type[RegistryError]
    ) -> tuple[bytes, str | None, Digest | None]:
        """The payload of a manifest, its Content-Type and the digest the upstream names
        (unverified); refused beyond the registry's manifest size limit."""
        response = await self.request(
            "GET", f"/v2/{remote}/manifests/{reference}", remote, missing, {"Accept": ACCEPT}
        )
        async with response:
            payload = await self._small_body(response, schema.MAX_MANIFEST_SIZE, "manifest")
        named = Digest.parse_or_none(response.headers.get("Docker-Content-Digest", ""))
        return payload, response.headers.get("Content-Type"), named

    async def blob_size(self, remote: str, digest: Digest, missing: type[RegistryError]) -> int:
        response = await self.request("HEAD", f"/v2/{remote}/blobs/{digest}", remote, missing)
        response.release()
        return self._length(response)

    async def open_blob(
        self, remote: str, digest: Digest, missing: type[RegistryError]
    ) -> tuple[aiohttp.ClientResponse, int]:
        """The upstream's answer to a blob GET, its body not read yet (the caller releases it),
        and the blob's size."""
        response = await self.request("GET", f"/v2/{remote}/blobs/{digest}", remote, missing)
        try:
            return response, self._length(response)
        except Unavailable:
            response.release()
            raise

    async def tags(self, remote: str, missing: type[RegistryError]) -> list[str]:
        """Every tag of `remote` upstream, following its pages; what is no tag is left out."""
        found: set[str] = set()
        path: str | None = f"/v2/{remote}/tags/list?n={TAGS_PAGE}"
        for _ in range(MAX_TAGS_PAGES):
            if path is None:
                break
            response = await self.request("GET", path, remote, missing)
            async with response:
                body = await self._small_body(response, MAX_TAGS_PAGE, "tags list")
            try:
                tags = json.loads(body).get("tags") or []
            except (ValueError, AttributeError):
                raise self._broken("a tags list that is not JSON") from None
            if not isinstance(tags, list):
                raise self._broken("a tags list whose tags are not a list")
            found.update(tag for tag in tags if isinstance(tag, str) and is_tag(tag))
            path = self._next_page(response.headers.get("Link"))
        return sorted(found)

    # the protocol

    async def request(
        self,
        method: str,
        path: str,
        remote: str,
        missing: type[RegistryError],
        headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """A request on the repository `remote`, authenticated as the upstream last asked (and
        again once after a 401 that asks otherwise); the answer when it is a success, its body
        not read yet."""
        # A blob body may take long: only the session's read timeout bounds it.
        bounded = method == "HEAD" or "/blobs/" not in path
        timeout = _small_timeout() if bounded else _transfer_timeout()
        for attempt in range(2):
            sent = {**(headers or {}), **await self._authorization(remote)}
            try:
                response = await self.session().request(
                    method, self.url + path, headers=sent, timeout=timeout
                )
            except TRANSPORT_ERRORS as exc:
                raise self._unreachable(exc) from None
            if response.status == 401 and attempt == 0 and self._learn(response, remote):
                response.release()
                continue
            break
        self._up()
        if 200 <= response.status < 300:
            return response
        response.release()
        raise self._refusal(response, remote, missing)

    def _refusal(
        self, response: aiohttp.ClientResponse, remote: str, missing: type[RegistryError]
    ) -> RegistryError:
        status = response.status
        if status == 404:
            return missing(f"not found upstream ({self.shown}/{remote})")
        if status in (401, 403):
            return missing(
                f"the upstream ({self.shown}) refused {remote}: it does not exist there, or "
                "the cache's credentials do not allow pulling it"
            )
        if status == 429:
            retry = response.headers.get("Retry-After", "")
            return TooManyRequests(
                f"the upstream ({self.shown}) limits requests; retry later",
                headers={"Retry-After": retry} if retry.isdigit() else {},
            )
        return self._broken(f"HTTP {status}")

    def _learn(self, response: aiohttp.ClientResponse, remote: str) -> bool:
        """Takes the challenge of a 401; whether another attempt may now succeed."""
        challenge = parse_challenge(response.headers.get("WWW-Authenticate"))
        if challenge is None:
            return False
        if challenge.scheme == BASIC:
            tried = self._challenge is not None and self._challenge.scheme == BASIC
            self._challenge = challenge
            return bool(self.username) and not tried
        self._challenge = challenge
        self._tokens.forget(self._token_key(challenge, remote))  # it was refused, if sent
        return True

    async def _authorization(self, remote: str) -> dict[str, str]:
        challenge = self._challenge
        if challenge is None:
            return {}
        if challenge.scheme == BASIC:
            if not self.username:
                return {}
            return {"Authorization": basic_header(self.username, self.password)}
        key = self._token_key(challenge, remote)
        token = self._tokens.cached(key)
        if token is None:
            async with self._tokens.lock(key):
                token = self._tokens.cached(key) or await self._fetch_token(challenge, key)
        return {"Authorization": f"Bearer {token}"}

    @staticmethod
    def _token_key(challenge: Challenge, remote: str) -> tuple[str, str, str]:
        return challenge.realm, challenge.params.get("service", ""), f"repository:{remote}:pull"

    async def _fetch_token(self, challenge: Challenge, key: tuple[str, str, str]) -> str:
        realm, service, scope = key
        if (
            self.username
            and urlsplit(realm).scheme == "http"
            and urlsplit(self.url).scheme == "https"
        ):
            raise Unavailable(
                f"the upstream ({self.shown}) sends its token requests to {realm}, over plain "
                "http: the cache's credentials are not sent there"
            )
        params = {"scope": scope, **({"service": service} if service else {})}
        credentials = (
            {"Authorization": basic_header(self.username, self.password)} if self.username else {}
        )
        try:
            async with self.session().get(
                realm,
                params=params,
                headers=credentials,
                timeout=_small_timeout(),
            ) as response:
                if response.status != 200:
                    hint = " (check the credentials)" if response.status in (401, 403) else ""
                    raise Unavailable(
                        f"the upstream's token server ({realm}) answered HTTP "
                        f"{response.status}{hint}"
                    )
                body = await self._small_body(response, 1 << 20, "token answer")
        except TRANSPORT_ERRORS as exc:
            raise Unavailable(
                f"the upstream's token server ({realm}) cannot be reached: {_describe(exc)}"
            ) from None
        try:
            return self._tokens.keep(key, json.loads(body))
        except ValueError as exc:
            raise Unavailable(f"the upstream's token server ({realm}): {exc}") from None

    # reading answers

    async def _small_body(self, response: aiohttp.ClientResponse, limit: int, what: str) -> bytes:
        if response.content_length is not None and response.content_length > limit:
            raise self._broken(f"a {what} larger than {limit} bytes")
        body = bytearray()
        try:
            async for chunk in response.content.iter_any():
                body += chunk
                if len(body) > limit:
                    raise self._broken(f"a {what} larger than {limit} bytes")
        except TRANSPORT_ERRORS as exc:
            raise self._unreachable(exc) from None
        return bytes(body)

    def _length(self, response: aiohttp.ClientResponse) -> int:
        length = response.content_length
        if length is None or length < 0:
            raise self._broken("a blob answer without Content-Length")
        return length

    def _next_page(self, link: str | None) -> str | None:
        """The path of the next page a Link header names, on this upstream only."""
        if not link or 'rel="next"' not in link:
            return None
        target = link.split(";")[0].strip().strip("<>")
        absolute = urlsplit(urljoin(self.url + "/", target))
        if absolute.netloc != urlsplit(self.url).netloc or not absolute.path.startswith("/v2/"):
            return None
        return absolute.path + (f"?{absolute.query}" if absolute.query else "")

    # errors

    def _unreachable(self, exc: BaseException) -> Unavailable:
        if not self._down:
            self._down = True
            log.warning("upstream %s cannot be reached: %s", self.shown, _describe(exc))
        return Unavailable(f"the upstream ({self.shown}) cannot be reached: {_describe(exc)}")

    def _broken(self, what: str) -> Unavailable:
        return Unavailable(f"the upstream ({self.shown}) answered {what}")

    def _up(self) -> None:
        if self._down:
            self._down = False
            log.info("upstream %s answers again", self.shown)


def _transfer_timeout() -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=None, sock_connect=CONNECT_TIMEOUT, sock_read=READ_TIMEOUT)


def _small_timeout() -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(total=SMALL_TIMEOUT, sock_connect=CONNECT_TIMEOUT)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


DOCKER_HUB_HOSTS = (
    "registry-1.docker.io",
    "index.docker.io",
    "docker.io",
    "registry.hub.docker.com",
)


def is_docker_hub(url: str) -> bool:
    return (urlsplit(url).hostname or "") in DOCKER_HUB_HOSTS
