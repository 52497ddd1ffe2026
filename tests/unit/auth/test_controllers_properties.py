"""Properties of reading credentials from `Authorization` (Basic and Bearer): any value a
client can send (visible ASCII, spaces and tabs, and bytes above 0x7f) gives the credentials it
carries or None, never an exception; credentials written out are read back as they were.

The requests are aiohttp's test requests, which take headers as text: bytes that are not UTF-8
are given here as U+FFFD. A real server hands them over as surrogate escapes; that case is sent
over the wire in tests/integration/test_properties.py."""

from __future__ import annotations

import base64

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given
from hypothesis import strategies as st

from moorage.auth.controllers import basic_credentials, bearer_token
from tests.strategies import authorization_values


def as_text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def request(authorization: str | None) -> web.Request:
    headers = {"Authorization": authorization} if authorization is not None else {}
    return make_mocked_request("GET", "/v2/", headers=headers)


@given(authorization_values() | st.none())
def test_basic_credentials_are_those_sent_or_none(value: bytes | None) -> None:
    header = as_text(value) if value is not None else None
    credentials = basic_credentials(request(header))
    if credentials is not None:
        assert header is not None
        scheme, _, encoded = header.partition(" ")
        assert scheme.lower() == "basic"
        user, password = credentials
        assert base64.b64decode(encoded.strip()) == f"{user}:{password}".encode()


@given(authorization_values() | st.none())
def test_a_bearer_token_is_the_one_sent_or_none(value: bytes | None) -> None:
    header = as_text(value) if value is not None else None
    token = bearer_token(request(header))
    if token is not None:
        assert header is not None
        scheme, _, rest = header.partition(" ")
        assert scheme.lower() == "bearer" and token == rest.strip() and token


@given(st.text().filter(lambda user: ":" not in user), st.text())
def test_basic_credentials_round_trip(user: str, password: str) -> None:
    encoded = base64.b64encode(f"{user}:{password}".encode()).decode()
    assert basic_credentials(request(f"Basic {encoded}")) == (user, password)
