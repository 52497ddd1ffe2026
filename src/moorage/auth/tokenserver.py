"""The built-in token endpoint, `/auth/token`, as Docker clients use one.

GET: Basic credentials (or none, for anonymous access) and `scope` parameters; answers
`{"token", "access_token", "expires_in", "issued_at"}`. POST (what `docker login` uses): the
OAuth2 `password` grant (with `access_type=offline`, a refresh token too) and the
`refresh_token` grant. Granted scopes are what was asked, narrowed by the ACL.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web
from aiohttp.web_request import FileField
from multidict import MultiDictProxy

from moorage.auth.controllers import Builtin, basic_credentials, challenge
from moorage.auth.errors import Denied, InvalidRequest, Unauthorized
from moorage.auth.scopes import ALL, REGISTRY, REPOSITORY, Scope
from moorage.auth.tokens import InvalidToken
from moorage.registry.errors import NameInvalid
from moorage.registry.names import check_name

REFRESH_LIFETIME = 7 * 24 * 3600
REFRESH_ACCESS = "refresh"  # the single access claim entry that marks a refresh token


def requested_scopes(values: list[str]) -> list[Scope]:
    """Scopes from `scope` parameters (each may hold several, space-separated). Only what the
    registry could be asked for is kept: repositories by a valid name, and the catalog; a
    scope for anything else is dropped, so no token ever names what the registry refuses."""
    found = []
    for value in values:
        for text in value.split():
            scope = Scope.parse(text)
            if scope is not None and _askable(scope):
                found.append(scope)
    return found


def _askable(scope: Scope) -> bool:
    if scope.type == REGISTRY:
        return scope.name == "catalog"
    if scope.type != REPOSITORY:
        return False
    try:
        check_name(scope.name)
    except NameInvalid:
        return False
    return True


def grant_for(server: Builtin, user: str | None, asked: list[Scope]) -> list[Scope]:
    """What the ACL lets `user` have of `asked`: repository actions it grants, and the catalog
    (whose listing is then filtered to what the user may pull)."""
    acl = server.acl.value
    granted = []
    for scope in asked:
        if scope.type == REPOSITORY:
            actions = scope.actions
            if ALL in actions:
                actions = frozenset({"pull", "push", "delete"})
            allowed = acl.allowed(user, scope.name, actions)
            if allowed:
                granted.append(Scope(REPOSITORY, scope.name, allowed))
        elif scope.type == REGISTRY and scope.name == "catalog":
            granted.append(Scope(REGISTRY, "catalog", frozenset({ALL})))
    return granted


def _check_service(server: Builtin, service: str | None) -> None:
    if service and service != server.service:
        raise Denied(f"this token server issues tokens for {server.service!r}, not {service!r}")


def _issue(server: Builtin, user: str | None, asked: list[Scope]) -> dict[str, Any]:
    """The token answer; `scope` says what was granted, which may be less than was asked."""
    granted = grant_for(server, user, asked)
    token = server.signer.issue(
        server.issuer, server.service, user or "", granted, server.expiration
    )
    return {
        "token": token,
        "access_token": token,
        "expires_in": server.expiration,
        "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scope": " ".join(str(scope) for scope in granted),
    }


def _login_challenge(server: Builtin) -> Unauthorized:
    return Unauthorized(
        "invalid username or password",
        headers={"WWW-Authenticate": challenge("Basic", realm=server.service)},
    )


async def _signed_in(server: Builtin, request: web.Request, user: str, password: str) -> str:
    if not await server.passwords.check(request, user, password):
        raise _login_challenge(server)
    return user


def token_handlers(server: Builtin) -> tuple[Any, Any]:
    async def get_token(request: web.Request) -> web.Response:
        _check_service(server, request.query.get("service"))
        credentials = basic_credentials(request)
        user = await _signed_in(server, request, *credentials) if credentials else None
        request["user"] = user or "-"
        asked = requested_scopes(request.query.getall("scope", []))
        return web.json_response(_issue(server, user, asked))

    async def post_token(request: web.Request) -> web.Response:
        form = await _form(request)
        fields = {key: str(value) for key, value in form.items() if isinstance(value, str)}
        _check_service(server, fields.get("service"))
        asked = requested_scopes([str(value) for value in form.getall("scope", [])])
        grant_type = fields.get("grant_type")
        if grant_type == "password":
            user = await _signed_in(
                server, request, fields.get("username", ""), fields.get("password", "")
            )
        elif grant_type == "refresh_token":
            user = _refresh_subject(server, fields.get("refresh_token", ""))
        else:
            raise InvalidRequest(f"unsupported grant_type {grant_type!r}")
        request["user"] = user
        issued = _issue(server, user, asked)
        answer: dict[str, Any] = {
            "access_token": issued["access_token"],
            "token_type": "Bearer",
            "expires_in": issued["expires_in"],
            "issued_at": issued["issued_at"],
            "scope": issued["scope"],
        }
        if grant_type == "refresh_token":
            answer["refresh_token"] = fields["refresh_token"]
        elif fields.get("access_type") == "offline":
            answer["refresh_token"] = _refresh_token(server, user)
        return web.json_response(answer)

    return get_token, post_token


FORM = "application/x-www-form-urlencoded"


async def _form(request: web.Request) -> MultiDictProxy[str | bytes | bytearray | FileField]:
    """The body of a token POST: an urlencoded form, as OAuth2 has it (InvalidRequest for any
    other or a malformed one; aiohttp's 413 beyond its body limit)."""
    if request.content_type != FORM:
        raise InvalidRequest(f"a token request's body is {FORM}")
    try:
        return await request.post()
    except ValueError as exc:  # not UTF-8, or not a form
        raise InvalidRequest(f"malformed form: {exc}") from None


def _refresh_token(server: Builtin, user: str) -> str:
    return server.signer.issue(
        server.issuer,
        server.service,
        user,
        [Scope(REFRESH_ACCESS, user, frozenset({REFRESH_ACCESS}))],
        REFRESH_LIFETIME,
    )


def _refresh_subject(server: Builtin, token: str) -> str:
    """The user a refresh token was issued to, while that user still exists."""
    try:
        claims = server.verifier.verify(token)
    except InvalidToken:
        raise Unauthorized("invalid refresh token") from None
    is_refresh = any(s.type == REFRESH_ACCESS for s in claims.access)
    if not is_refresh or not claims.subject or not server.passwords.users.exists(claims.subject):
        raise Unauthorized("invalid refresh token")
    return claims.subject
