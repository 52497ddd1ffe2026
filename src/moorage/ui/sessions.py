"""The web UI's sessions: a signed cookie holding who signed in and the session's CSRF token.

The cookie is signed (itsdangerous, HMAC-SHA256 with a timestamp) with a key derived from
`http.secret`, so every worker and replica sharing that secret reads it, and it lasts
`ui.sessionlifetime`. It is HttpOnly (no script reads it), SameSite=Lax (no other site's form
or script sends it) and Secure when the page came over HTTPS. Nothing else is kept server-side:
signing out replaces the cookie, and a user removed from the users file is signed out on their
next request (the access gate checks it).

Every visitor gets a session, signed in or not, so that every form (sign-in included) carries
the session's CSRF token and every write checks it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "moorage_ui"
CSRF_FIELD = "csrf"


@dataclass(frozen=True)
class Session:
    user: str | None  # None: anonymous
    csrf: str
    fresh: bool = False  # made for this request: the cookie is to be set

    def valid_token(self, token: str | None) -> bool:
        return token is not None and hmac.compare_digest(token.encode(), self.csrf.encode())


class Sessions:
    def __init__(self, secret: bytes, lifetime: float, path: str) -> None:
        """`secret`: http.secret; `lifetime`: seconds a session lasts; `path`: the UI's URL
        path, the only one the cookie is sent to."""
        # a key of its own, so that nothing else signed with http.secret reads as a session
        key = hmac.new(secret, b"moorage web UI sessions", hashlib.sha256).digest()
        self.serializer = URLSafeTimedSerializer(key, salt="moorage-ui-session")
        self.lifetime = lifetime
        self.path = path

    def load(self, request: web.Request) -> Session:
        """The request's session, or a fresh anonymous one when the cookie is missing, expired
        or not ours."""
        cookie = request.cookies.get(COOKIE)
        if cookie:
            try:
                data: Any = self.serializer.loads(cookie, max_age=int(self.lifetime))
            except BadSignature:  # SignatureExpired included
                data = None
            if (
                isinstance(data, dict)
                and isinstance(data.get("c"), str)
                and (data.get("u") is None or isinstance(data.get("u"), str))
            ):
                return Session(data["u"], data["c"])
        return self.new(None)

    def new(self, user: str | None) -> Session:
        """A session for `user` with a new CSRF token (on every sign-in and sign-out)."""
        return Session(user, secrets.token_urlsafe(24), fresh=True)

    def save(self, request: web.Request, response: web.StreamResponse, session: Session) -> None:
        response.set_cookie(
            COOKIE,
            self.serializer.dumps({"u": session.user, "c": session.csrf}),
            max_age=int(self.lifetime),
            path=self.path,
            httponly=True,
            samesite="Lax",
            secure=request.get("ui_https", False),
        )
