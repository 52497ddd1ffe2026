from __future__ import annotations

import pytest

from moorage.proxy.challenges import (
    BASIC,
    BEARER,
    DEFAULT_LIFETIME,
    Tokens,
    basic_header,
    parse_challenge,
    read_token,
)


def test_docker_hubs_bearer_challenge() -> None:
    header = (
        'Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
        'scope="repository:library/alpine:pull"'
    )
    challenge = parse_challenge(header)
    assert challenge is not None
    assert challenge.scheme == BEARER
    assert challenge.realm == "https://auth.docker.io/token"
    assert challenge.params == {
        "realm": "https://auth.docker.io/token",
        "service": "registry.docker.io",
        "scope": "repository:library/alpine:pull",
    }


@pytest.mark.parametrize(
    ("header", "params"),
    [
        ('Basic realm="Registry Realm"', {"realm": "Registry Realm"}),
        ("basic realm=plain", {"realm": "plain"}),
        ('Basic realm="a \\"quoted\\" \\\\ realm", charset="UTF-8"',
         {"realm": 'a "quoted" \\ realm', "charset": "UTF-8"}),
        ("Basic", {}),
    ],
)  # fmt: skip
def test_basic_challenges(header: str, params: dict[str, str]) -> None:
    challenge = parse_challenge(header)
    assert challenge is not None and challenge.scheme == BASIC
    assert challenge.params == params


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        'Bearer service="x"',  # no realm
        'Bearer realm="ftp://auth.example/token"',
        'Bearer realm="/relative/token"',
        'Bearer realm="https:///no-host"',
        'Digest realm="x", nonce="y"',
        '"quoted" scheme',
    ],
)
def test_challenges_that_are_no_credentials(header: str | None) -> None:
    assert parse_challenge(header) is None


def test_the_first_of_a_parameter_given_twice_counts() -> None:
    challenge = parse_challenge('Bearer realm="https://a.example/t",realm="https://b.example/t"')
    assert challenge is not None and challenge.realm == "https://a.example/t"


def test_basic_header() -> None:
    assert basic_header("cache", "pw") == "Basic Y2FjaGU6cHc="


def test_token_answers() -> None:
    assert read_token({"token": "abc", "expires_in": 300}, 1000.0) == ("abc", 1290.0)
    assert read_token({"access_token": "abc"}, 0.0) == ("abc", DEFAULT_LIFETIME - 10)
    # A short lifetime keeps most of it; a useless one is the default.
    assert read_token({"token": "abc", "expires_in": 2}, 0.0) == ("abc", 1.5)
    for lifetime in (0, -5, "300", True, None):
        assert read_token({"token": "t", "expires_in": lifetime}, 0.0)[1] == DEFAULT_LIFETIME - 10


@pytest.mark.parametrize(
    "answer",
    [[], "token", {}, {"token": ""}, {"token": 5}, {"token": "two\nlines"}, {"token": "naïve"}],
)
def test_answers_without_a_usable_token(answer: object) -> None:
    with pytest.raises(ValueError):
        read_token(answer, 0.0)


def test_tokens_are_kept_until_shortly_before_they_expire() -> None:
    tokens = Tokens()
    key = ("https://auth.example/token", "registry", "repository:a:pull")
    assert tokens.cached(key) is None
    assert tokens.keep(key, {"token": "t1", "expires_in": 300}) == "t1"
    assert tokens.cached(key) == "t1"
    assert tokens.cached((key[0], key[1], "repository:b:pull")) is None
    tokens.forget(key)
    assert tokens.cached(key) is None
