"""How an upstream registry asks to be authenticated, and the credentials answering it.

A registry answers 401 with `WWW-Authenticate`: `Basic realm="..."`, or `Bearer realm="...",
service="...",scope="..."` for the token flow Docker Hub uses (the client asks the realm for a
token of the scope, with Basic credentials when it has some, and sends it as `Bearer`). Tokens
are kept per scope until shortly before they expire. Everything here comes from the network:
a challenge or token answer that is not what the protocol says is no credential at all.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

BASIC = "basic"
BEARER = "bearer"
DEFAULT_LIFETIME = 60  # seconds, when a token answer says none (the token spec's default)
MAX_TOKEN_ANSWER = 1 << 20

# RFC 7235: a scheme, then comma-separated `name=token` or `name="quoted string"` parameters.
_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9!#$%&'*+.^_`|~-]*)\s*")
_PARAM = re.compile(
    r'\s*,?\s*([A-Za-z0-9!#$%&\'*+.^_`|~-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*'
)


@dataclass(frozen=True)
class Challenge:
    scheme: str  # BASIC or BEARER
    params: dict[str, str]

    @property
    def realm(self) -> str:
        return self.params.get("realm", "")


def parse_challenge(header: str | None) -> Challenge | None:
    """The first challenge of a `WWW-Authenticate` value, when it is Basic or a Bearer with a
    usable realm (an http(s) URL); None for anything else."""
    if not header:
        return None
    match = _SCHEME.match(header)
    if match is None:
        return None
    scheme = match.group(1).lower()
    params: dict[str, str] = {}
    position = match.end()
    while position < len(header):
        param = _PARAM.match(header, position)
        if param is None or param.end() == position:
            break
        name = param.group(1).lower()
        if param.group(2) is not None:
            value = re.sub(r"\\(.)", r"\1", param.group(2))
        else:
            value = param.group(3)
        params.setdefault(name, value)
        position = param.end()
    if scheme == BASIC:
        return Challenge(BASIC, params)
    if scheme == BEARER:
        realm = urlsplit(params.get("realm", ""))
        if realm.scheme in ("http", "https") and realm.hostname:
            return Challenge(BEARER, params)
    return None


def basic_header(username: str, password: str) -> str:
    token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def read_token(answer: Any, now: float) -> tuple[str, float]:
    """The token of a token server's JSON answer and when to stop using it (a little before it
    expires). Raises ValueError when the answer holds no token."""
    if not isinstance(answer, dict):
        raise ValueError("the token answer is not a JSON object")
    token = answer.get("token") or answer.get("access_token")
    if not isinstance(token, str) or not token or not token.isascii() or not token.isprintable():
        raise ValueError("the token answer holds no token")
    lifetime = answer.get("expires_in")
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime <= 0:
        lifetime = DEFAULT_LIFETIME
    margin = min(10.0, lifetime / 4)
    return token, now + lifetime - margin


class Tokens:
    """Bearer tokens by (realm, service, scope), each fetched once however many requests need
    it at the same time."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._locks: dict[tuple[str, str, str], asyncio.Lock] = {}

    def cached(self, key: tuple[str, str, str]) -> str | None:
        found = self._tokens.get(key)
        if found is None or found[1] <= time.monotonic():
            return None
        return found[0]

    def forget(self, key: tuple[str, str, str]) -> None:
        self._tokens.pop(key, None)

    def lock(self, key: tuple[str, str, str]) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    def keep(self, key: tuple[str, str, str], answer: Any) -> str:
        """Keeps the token of a token server's answer (ValueError when it holds none)."""
        token, until = read_token(answer, time.monotonic())
        self._tokens[key] = (token, until)
        return token
