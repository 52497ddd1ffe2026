"""The web UI's session cookie: signed, expiring, and read only with the secret it was made
with."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from moorage.ui.sessions import COOKIE, Sessions


def request_with(cookie: str | None) -> Any:
    headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie is not None else {}
    return make_mocked_request("GET", "/ui/", headers=headers)


def cookie_of(sessions: Sessions, user: str | None) -> tuple[str, Any]:
    session = sessions.new(user)
    response = web.Response()
    sessions.save(request_with(None), response, session)
    morsel = response.cookies[COOKIE]
    return morsel.value, session


def test_a_session_reads_back_with_its_csrf_token() -> None:
    sessions = Sessions(b"secret", 3600, "/ui/")
    value, made = cookie_of(sessions, "alice")
    read = sessions.load(request_with(value))
    assert (read.user, read.csrf, read.fresh) == ("alice", made.csrf, False)
    assert read.valid_token(made.csrf)
    assert not read.valid_token("other") and not read.valid_token(None)


def test_the_cookie_is_httponly_lax_and_bound_to_the_ui() -> None:
    sessions = Sessions(b"secret", 3600, "/ui/")
    response = web.Response()
    sessions.save(request_with(None), response, sessions.new(None))
    morsel = response.cookies[COOKIE]
    assert morsel["httponly"] and morsel["samesite"] == "Lax" and morsel["path"] == "/ui/"
    assert morsel["max-age"] == "3600"


def tampered(value: str) -> str:
    """The cookie with its signature's first character changed: a character that carries six
    bits of the signature. (Its last carries only four: base64 decoding ignores the other two,
    so changing it alone may leave the signature as it was.)"""
    payload, _, signature = value.rpartition(".")
    first = "A" if signature[0] != "A" else "B"
    return f"{payload}.{first}{signature[1:]}"


def test_another_secret_a_changed_cookie_or_an_expired_one_is_no_session() -> None:
    value, _ = cookie_of(Sessions(b"secret", 3600, "/ui/"), "alice")
    for sessions, cookie in (
        (Sessions(b"another secret", 3600, "/ui/"), value),
        (Sessions(b"secret", 3600, "/ui/"), tampered(value)),
        (Sessions(b"secret", -1, "/ui/"), value),
        (Sessions(b"secret", 3600, "/ui/"), "garbage"),
    ):
        read = sessions.load(request_with(cookie))
        assert read.user is None and read.fresh
