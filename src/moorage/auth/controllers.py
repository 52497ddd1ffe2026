"""Access controllers, one per `auth` section: silly, htpasswd, token, and moorage's builtin.

Each answers `authorize(request, wanted)` with a Grant, or raises Unauthorized carrying the
challenge a client needs (`WWW-Authenticate`), or TooManyRequests after repeated failures.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from typing import Any, Protocol

from aiohttp import web

from moorage.auth.acl import Acl
from moorage.auth.acl import parse as parse_acl
from moorage.auth.errors import TooManyRequests, Unauthorized
from moorage.auth.htpasswd import Users
from moorage.auth.htpasswd import parse as parse_users
from moorage.auth.ratelimit import FailedLogins
from moorage.auth.scopes import Grant, Scope
from moorage.auth.tokens import (
    DEFAULT_ALGORITHMS,
    InvalidToken,
    Signer,
    Verifier,
    load_certificates,
    load_jwks,
    load_or_create_signer,
)
from moorage.auth.watched import WatchedFile

log = logging.getLogger("moorage.auth")

# (request, path from /v2/ on or /auth/token) -> the URL the client must use
UrlFor = Callable[[web.Request, str], str]


class AccessController(Protocol):
    name: str

    async def authorize(self, request: web.Request, wanted: list[Scope]) -> Grant: ...

    def visible(self, grant: Grant, repositories: list[str]) -> list[str]:
        """The repositories of a catalog page the grant may see."""
        ...


# What RFC 7230's quoted-string may hold besides a quoted pair: tab, space and visible ASCII
# (obs-text is left out: clients differ on its meaning).
_UNQUOTABLE = re.compile(r"[^\t\x20-\x7e]")


def quoted_string(value: str) -> str:
    """`value` as an RFC 7230 quoted-string: `\\` and `"` escaped, and any character a
    quoted string cannot hold replaced by `?`, so no value can end the string early."""
    text = _UNQUOTABLE.sub("?", value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def challenge(scheme: str, **params: str) -> str:
    """A `WWW-Authenticate` value (RFC 7235): the scheme, then each parameter quoted."""
    return f"{scheme} " + ",".join(f"{key}={quoted_string(value)}" for key, value in params.items())


def _scope_text(wanted: list[Scope]) -> dict[str, str]:
    return {"scope": " ".join(str(s) for s in wanted)} if wanted else {}


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, password = base64.b64decode(value.strip()).decode().partition(":")
    except (binascii.Error, ValueError):  # not base64 (non-ASCII text too), or not UTF-8
        return None
    return (user, password) if sep else None


def bearer_token(request: web.Request) -> str | None:
    """The token of a `Bearer` Authorization header. A token is ASCII (a JWT's base64url
    parts); anything else is handed on as-is for the verifier to refuse."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


class Passwords:
    """Checks user names and passwords against an htpasswd file, with failed-login limiting and
    a log line per failure (never the password)."""

    def __init__(self, path: str) -> None:
        self.users = Users(path)
        self.failures = FailedLogins()

    async def check(self, request: web.Request, user: str, password: str) -> bool:
        address = request.remote or "-"
        wait = self.failures.retry_after(user, address)
        if wait:
            raise TooManyRequests(headers={"Retry-After": str(wait)})
        if await self.users.check(user, password):
            self.failures.succeeded(user)
            return True
        self.failures.failed(user, address)
        log.warning("failed login for user %r from %s", user, address)
        return False


class Silly:
    """distribution's test controller: any Authorization header is accepted."""

    name = "silly"

    def __init__(self, options: dict[str, Any], url_for: UrlFor) -> None:
        self.realm = str(options.get("realm", ""))
        self.service = str(options.get("service", ""))

    async def authorize(self, request: web.Request, wanted: list[Scope]) -> Grant:
        if not request.headers.get("Authorization"):
            value = challenge(
                "Bearer", realm=self.realm, service=self.service, **_scope_text(wanted)
            )
            raise Unauthorized(headers={"WWW-Authenticate": value})
        return Grant("silly", everything=True)

    def visible(self, grant: Grant, repositories: list[str]) -> list[str]:
        return repositories


class Htpasswd:
    """HTTP Basic against a bcrypt htpasswd file: a signed-in user may do anything."""

    name = "htpasswd"

    def __init__(self, options: dict[str, Any], url_for: UrlFor) -> None:
        self.realm = str(options.get("realm") or "moorage")
        path = options.get("path")
        if not path:
            raise ValueError("auth.htpasswd.path: required")
        with _about("auth.htpasswd.path"):
            self.passwords = Passwords(str(path))

    async def authorize(self, request: web.Request, wanted: list[Scope]) -> Grant:
        credentials = basic_credentials(request)
        if credentials and await self.passwords.check(request, *credentials):
            return Grant(credentials[0], everything=True)
        raise Unauthorized(headers={"WWW-Authenticate": challenge("Basic", realm=self.realm)})

    def visible(self, grant: Grant, repositories: list[str]) -> list[str]:
        return repositories


class Token:
    """Bearer tokens from a token server (distribution's `auth.token`)."""

    name = "token"

    def __init__(self, options: dict[str, Any], url_for: UrlFor) -> None:
        for key in ("realm", "service", "issuer"):
            if not options.get(key) and not (key == "realm" and options.get("autoredirect")):
                raise ValueError(f"auth.token.{key}: required")
        self.realm = str(options.get("realm", ""))
        self.service = str(options["service"])
        self.autoredirect = bool(options.get("autoredirect"))
        self.redirect_path = str(options.get("autoredirectpath") or "/auth/token")
        self.url_for = url_for
        roots = []
        if options.get("rootcertbundle"):
            with _about("auth.token.rootcertbundle"):
                roots = load_certificates(str(options["rootcertbundle"]))
        jwks = {}
        if options.get("jwks"):
            with _about("auth.token.jwks"):
                jwks = load_jwks(str(options["jwks"]))
        if not roots and not jwks:
            raise ValueError("auth.token: rootcertbundle or jwks is required")
        algorithms = tuple(options.get("signingalgorithms") or DEFAULT_ALGORITHMS)
        self.verifier = Verifier(str(options["issuer"]), self.service, roots, jwks, algorithms)

    def realm_for(self, request: web.Request) -> str:
        return self.url_for(request, self.redirect_path) if self.autoredirect else self.realm

    def challenge(self, request: web.Request, wanted: list[Scope], error: str = "") -> Unauthorized:
        value = challenge(
            "Bearer",
            realm=self.realm_for(request),
            service=self.service,
            **_scope_text(wanted),
            **({"error": error} if error else {}),
        )
        return Unauthorized(headers={"WWW-Authenticate": value})

    async def authorize(self, request: web.Request, wanted: list[Scope]) -> Grant:
        token = bearer_token(request)
        if token is None:
            raise self.challenge(request, wanted)
        try:
            claims = self.verifier.verify(token)
        except InvalidToken as exc:
            log.info("refused token from %s: %s", request.remote, exc)
            raise self.challenge(request, wanted, "invalid_token") from None
        grant = Grant(claims.subject or None, claims.access)
        if not grant.covers(wanted):
            raise self.challenge(request, wanted, "insufficient_scope")
        return grant

    def visible(self, grant: Grant, repositories: list[str]) -> list[str]:
        return repositories


class Builtin(Token):
    """moorage's own token server: users from htpasswd, grants from the ACL file, tokens signed
    with a key of its own (made on first start) and verified here like any token."""

    name = "builtin"

    def __init__(self, options: dict[str, Any], url_for: UrlFor) -> None:
        for key in ("service", "users", "acl", "signingkey"):
            if not options.get(key):
                raise ValueError(f"auth.builtin.{key}: required")
        self.service = str(options["service"])
        self.issuer = str(options.get("issuer") or "moorage")
        self.expiration = int(options.get("expiration") or 300)
        key_path = str(options["signingkey"])
        certificate = str(options.get("certificate") or os.path.splitext(key_path)[0] + ".crt")
        with _about("auth.builtin.signingkey"):
            self.signer: Signer = load_or_create_signer(key_path, certificate, self.service)
        with _about("auth.builtin.users"):
            self.passwords = Passwords(str(options["users"]))
        with _about("auth.builtin.acl"):
            self.acl: WatchedFile[Acl] = WatchedFile(str(options["acl"]), parse_acl)
        self.realm = ""
        self.autoredirect = True
        self.redirect_path = "/auth/token"
        self.url_for = url_for
        self.verifier = Verifier(self.issuer, self.service, [self.signer.certificate])

    def visible(self, grant: Grant, repositories: list[str]) -> list[str]:
        acl = self.acl.value
        return [name for name in repositories if acl.deciding(grant.user, name, "pull")]


FACTORIES: dict[str, Callable[[dict[str, Any], UrlFor], AccessController]] = {
    "silly": Silly,
    "htpasswd": Htpasswd,
    "token": Token,
    "builtin": Builtin,
}


def create(
    auth: dict[str, dict[str, Any] | None], url_for: UrlFor, *, create_files: bool = True
) -> AccessController | None:
    """The controller the `auth` section names (None when it names none). Raises ValueError
    with the key path for a bad section. Without `create_files`, a missing signing key is not
    made (and the built-in server is only checked, not built)."""
    sections = {name: options for name, options in auth.items() if name != "none"}
    if not sections:
        return None
    if len(sections) > 1:
        raise ValueError(f"auth: configure one access controller, found {sorted(sections)}")
    name, options = next(iter(sections.items()))
    if name not in FACTORIES:
        raise ValueError(
            f"auth.{name}: unknown access controller; expected one of {sorted(FACTORIES)}"
        )
    if name == "builtin" and not create_files:
        _check_builtin(options or {})
        return None
    return FACTORIES[name](options or {}, url_for)


@contextlib.contextmanager
def _about(key: str) -> Iterator[None]:
    """Makes a file's problem (ValueError, OSError) inside a ValueError naming the config key."""
    try:
        yield
    except OSError as exc:
        raise ValueError(f"{key}: {exc.filename or 'file'}: {exc.strerror}") from None
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None


def _check_builtin(options: dict[str, Any]) -> None:
    """What building the built-in token server would find wrong, short of making its key."""
    for key in ("service", "users", "acl", "signingkey"):
        if not options.get(key):
            raise ValueError(f"auth.builtin.{key}: required")
    for key, parse in (("users", parse_users), ("acl", parse_acl)):
        with _about(f"auth.builtin.{key}"):
            parse(str(options[key]))
    key = str(options["signingkey"])
    if os.path.isdir(key):
        raise ValueError(f"auth.builtin.signingkey: {key} is a directory, not a key file")
    if not os.path.exists(key) and not os.access(os.path.dirname(os.path.abspath(key)), os.W_OK):
        raise ValueError(f"auth.builtin.signingkey: {key} is missing and cannot be created there")
