"""Properties of bearer token verification against hand-made JWTs: whatever the header (any
algorithm, key id, x5c chain, nesting), the claims (missing, of the wrong type, huge, NaN) and
the signature (genuine, by another key, random, none), `Verifier.verify` answers Claims only for
a token that a trusted key signed with the right issuer, audience and expiry, and refuses
everything else with InvalidToken, never another exception. Tokens the built-in server issues
verify with the access they grant."""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jwt.algorithms import get_default_algorithms

from moorage.auth.scopes import Scope
from moorage.auth.tokens import (
    InvalidToken,
    Signer,
    Verifier,
    libtrust_key_id,
    load_or_create_signer,
)
from tests.pki import Issued, certificate
from tests.strategies import (
    Pairs,
    Raw,
    as_received,
    encode,
    field_values,
    json_values,
    mutated,
    nested,
    valid_names,
)

ISSUER, SERVICE = "test-issuer", "test-service"
ES256 = get_default_algorithms()["ES256"]


@dataclass
class Keys:
    root: Issued
    intermediate: Issued
    leaf: Issued  # signed by the intermediate
    foreign: Issued


@pytest.fixture(scope="module")
def keys() -> Keys:
    root = certificate("root")
    intermediate = certificate("intermediate", issuer=root)
    return Keys(
        root,
        intermediate,
        certificate("leaf", issuer=intermediate, ca=False),
        certificate("foreign"),
    )


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def claim_sets() -> st.SearchStrategy[Any]:
    """Valid claims, the same with one claim dropped or given any value (NaN, 1e999, huge,
    nested), and any JSON value at all."""
    now = int(time.time())
    valid: dict[str, Any] = {
        "iss": ISSUER, "sub": "alice", "aud": SERVICE, "exp": now + 300, "nbf": now - 1,
        "iat": now, "jti": "j", "access": [{"type": "repository", "name": "a/b",
                                             "actions": ["pull"]}],
    }  # fmt: skip
    odd_values = json_values | st.sampled_from(
        [Raw(b"NaN"), Raw(b"1e999"), Raw(b"9" * 4000), nested(50), nested(3000), [SERVICE, 1]]
    )
    return st.one_of(
        st.just(valid),
        st.sampled_from(sorted(valid)).map(
            lambda key: {k: v for k, v in valid.items() if k != key}
        ),
        st.tuples(st.sampled_from(sorted(valid)), odd_values).map(
            lambda change: {**valid, change[0]: change[1]}
        ),
        st.tuples(st.sampled_from(sorted(valid)), odd_values).map(
            lambda change: Pairs((*valid.items(), change))
        ),
        json_values,
    )


@st.composite
def tokens(draw: st.DrawFn, keys: Keys) -> str:
    identity = draw(st.sampled_from(["kid", "x5c", "x5c of the leaf only", "none", "junk"]))
    header: dict[str, Any] = {"typ": "JWT"}
    if draw(st.integers(0, 5)):
        header["alg"] = draw(
            st.sampled_from(["ES256", "ES256", "RS256", "HS256", "none", "EdDSA", ""]) | json_values
        )
    signer = keys.root
    if identity == "kid":
        header["kid"] = libtrust_key_id(keys.root.key.public_key())
    elif identity.startswith("x5c"):
        chain = [keys.leaf] if identity.endswith("only") else [keys.leaf, keys.intermediate]
        header["x5c"] = [issued.der_b64() for issued in chain]
        signer = keys.leaf
    elif identity == "junk":
        header[draw(st.sampled_from(["kid", "x5c"]))] = draw(
            json_values | st.lists(st.binary(max_size=40).map(lambda b: b64url(b).decode()))
        )
    head: Any = draw(st.sampled_from([header]) | json_values | st.just(nested(3000)))
    body = draw(claim_sets().map(encode) | st.binary(max_size=60))
    signing_input = b64url(encode(head)) + b"." + b64url(body)
    signature = draw(
        st.sampled_from(["genuine", "genuine", "foreign"]).map(
            lambda who: ES256.sign(
                signing_input, (signer if who == "genuine" else keys.foreign).key
            )
        )
        | st.binary(max_size=80)
    )
    token = (signing_input + b"." + b64url(signature)).decode()
    return draw(st.sampled_from([token]) | mutated(st.just(token)))


@given(st.data())
def test_a_token_is_trusted_or_refused_with_invalid_token(keys: Keys, data: st.DataObject) -> None:
    token = data.draw(tokens(keys), label="token")
    try:
        claims = Verifier(ISSUER, SERVICE, [keys.root.cert]).verify(token)
    except InvalidToken:
        return
    assert claims.subject == "alice"


@given(st.text(max_size=200) | field_values.map(as_received))
def test_any_text_is_refused(keys: Keys, text: str) -> None:
    """Any text, and any header value as aiohttp hands it over (bytes that are not UTF-8 as
    surrogate escapes)."""
    with pytest.raises(InvalidToken):
        Verifier(ISSUER, SERVICE, [keys.root.cert]).verify(text)


scopes = st.builds(
    Scope,
    st.just("repository"),
    valid_names,
    st.frozensets(st.sampled_from(["pull", "push", "delete"]), min_size=1),
)


@pytest.fixture(scope="module")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    directory = tmp_path_factory.mktemp("signer")
    return load_or_create_signer(
        str(directory / "token.key"), str(directory / "token.crt"), SERVICE
    )


@given(st.lists(scopes, max_size=4), st.text(max_size=20))
def test_issued_tokens_verify_with_what_they_grant(
    signer: Signer, granted: list[Scope], subject: str
) -> None:
    token = signer.issue(ISSUER, SERVICE, subject, granted, 300)
    claims = Verifier(ISSUER, SERVICE, [signer.certificate]).verify(token)
    assert claims.access == granted
    assert claims.subject == subject
