"""Token verification as distribution does it, with keys and certificates made here: x5c chains
(through an intermediate) to the root bundle, kid as a libtrust fingerprint or a JWKS key id,
the iss/aud/exp/nbf checks, and every way a token can be forged."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from moorage.auth.scopes import CATALOG, repository
from moorage.auth.tokens import (
    InvalidToken,
    Verifier,
    libtrust_key_id,
    load_jwks,
    load_or_create_signer,
)
from tests.pki import (
    Issued,
    certificate,
    claims,
    hmac_signed,
    mint,
    repo_access,
    tampered,
    unsigned,
)

ISSUER, SERVICE = "test-issuer", "test-service"


@dataclass
class Pki:
    root: Issued
    intermediate: Issued
    leaf: Issued  # signed by the intermediate
    direct: Issued  # a leaf signed by the root
    foreign_root: Issued
    foreign_leaf: Issued


@pytest.fixture(scope="module")
def pki() -> Pki:
    root = certificate("root")
    intermediate = certificate("intermediate", issuer=root)
    foreign_root = certificate("foreign-root")
    return Pki(
        root,
        intermediate,
        certificate("leaf", issuer=intermediate, ca=False),
        certificate("direct-leaf", issuer=root, ca=False),
        foreign_root,
        certificate("foreign-leaf", issuer=foreign_root, ca=False),
    )


def verifier(pki: Pki, algorithms: tuple[str, ...] | None = None) -> Verifier:
    if algorithms is None:
        return Verifier(ISSUER, SERVICE, [pki.root.cert])
    return Verifier(ISSUER, SERVICE, [pki.root.cert], algorithms=algorithms)


def test_x5c_chain_through_an_intermediate(pki: Pki) -> None:
    leaf, intermediate = pki.leaf, pki.intermediate
    access = [
        repo_access("team/app", "pull", "push"),
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]
    token = mint(claims(access=access), leaf.key, x5c=[leaf, intermediate])
    verified = verifier(pki).verify(token)
    assert verified.subject == "alice"
    assert verified.access == [repository("team/app", "pull", "push"), CATALOG]


def test_x5c_leaf_signed_by_the_root(pki: Pki) -> None:
    direct = pki.direct
    token = mint(claims(), direct.key, x5c=[direct])
    assert verifier(pki).verify(token).subject == "alice"


def test_x5c_chain_missing_its_intermediate_is_refused(pki: Pki) -> None:
    leaf = pki.leaf
    token = mint(claims(), leaf.key, x5c=[leaf])
    with pytest.raises(InvalidToken, match="x5c"):
        verifier(pki).verify(token)


def test_x5c_chain_to_a_foreign_root_is_refused(pki: Pki) -> None:
    leaf, root = pki.foreign_leaf, pki.foreign_root
    token = mint(claims(), leaf.key, x5c=[leaf, root])
    with pytest.raises(InvalidToken, match="x5c"):
        verifier(pki).verify(token)


def test_x5c_of_a_trusted_chain_but_signed_by_another_key_is_refused(
    pki: Pki,
) -> None:
    leaf, intermediate = pki.leaf, pki.intermediate
    token = mint(claims(), pki.foreign_leaf.key, x5c=[leaf, intermediate])
    with pytest.raises(InvalidToken, match=r"[Ss]ignature"):
        verifier(pki).verify(token)


def test_x5c_expired_certificate_is_refused(pki: Pki) -> None:
    old = certificate("old-leaf", issuer=pki.root, ca=False, expired=True)
    token = mint(claims(), old.key, x5c=[old])
    with pytest.raises(InvalidToken, match="validity"):
        verifier(pki).verify(token)


def test_kid_as_libtrust_fingerprint_of_a_root(pki: Pki) -> None:
    root = pki.root
    kid = libtrust_key_id(root.key.public_key())
    token = mint(claims(), root.key, kid=kid)
    assert verifier(pki).verify(token).subject == "alice"


def test_unknown_kid_and_no_key_header_are_refused(pki: Pki) -> None:
    root = pki.root
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier(pki).verify(mint(claims(), root.key, kid="NOPE:NOPE"))
    with pytest.raises(InvalidToken, match="unknown key"):
        verifier(pki).verify(mint(claims(), root.key))


def test_foreign_key_under_a_trusted_kid_is_refused(pki: Pki) -> None:
    kid = libtrust_key_id(pki.root.key.public_key())
    token = mint(claims(), pki.foreign_root.key, kid=kid)
    with pytest.raises(InvalidToken, match=r"[Ss]ignature"):
        verifier(pki).verify(token)


def test_libtrust_key_id_format() -> None:
    """Twelve groups of four base32 characters: the first 240 bits of the SHA-256 of the DER
    public key (cross-checked against distribution itself in the integration tests)."""
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    kid = libtrust_key_id(key)
    groups = kid.split(":")
    assert len(groups) == 12 and all(len(g) == 4 for g in groups)
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert base64.b32decode("".join(groups)) == hashlib.sha256(der).digest()[:30]


def test_kid_via_jwks(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    jwk["kid"] = "key-1"
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk]}))
    check = Verifier(ISSUER, SERVICE, [], load_jwks(str(path)))
    token = mint(claims(), key, kid="key-1", algorithm="RS256")
    assert check.verify(token).subject == "alice"
    with pytest.raises(InvalidToken):
        check.verify(mint(claims(), key, kid="key-2", algorithm="RS256"))
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(InvalidToken):
        check.verify(mint(claims(), other, kid="key-1", algorithm="RS256"))


def test_load_jwks_refuses_keys_without_ids(tmp_path: Path) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}))
    with pytest.raises(ValueError, match=r"jwks\.json"):
        load_jwks(str(path))


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        # times as offsets from when the test runs (not from when pytest collected it)
        ({"exp": -120}, "expired"),
        ({"nbf": 300}, "not yet valid"),
        ({"iss": "someone-else"}, "issuer"),
        ({"aud": "another-service"}, "[Aa]udience"),
    ],
)
def test_claims_are_checked(pki: Pki, changes: dict[str, object], problem: str) -> None:
    direct = pki.direct
    now = int(time.time())
    changed = {
        k: now + v if k in ("exp", "nbf") and isinstance(v, int) else v for k, v in changes.items()
    }
    token = mint({**claims(), **changed}, direct.key, x5c=[direct])
    with pytest.raises(InvalidToken, match=problem):
        verifier(pki).verify(token)


def test_expiry_has_a_minute_of_leeway(pki: Pki) -> None:
    direct = pki.direct
    token = mint(claims(exp=int(time.time()) - 20), direct.key, x5c=[direct])
    assert verifier(pki).verify(token).subject == "alice"


def test_missing_exp_is_refused(pki: Pki) -> None:
    direct = pki.direct
    document = claims()
    del document["exp"]
    with pytest.raises(InvalidToken, match="exp"):
        verifier(pki).verify(mint(document, direct.key, x5c=[direct]))


def test_alg_none_is_refused(pki: Pki) -> None:
    direct = pki.direct
    kid = libtrust_key_id(direct.key.public_key())
    for token in (
        unsigned(claims(), x5c=[direct.der_b64()]),
        unsigned(claims(), kid=kid),
    ):
        with pytest.raises(InvalidToken, match="none"):
            verifier(pki, algorithms=("none", "ES256")).verify(token)


def test_hs256_with_the_public_key_as_secret_is_refused(pki: Pki) -> None:
    """The classic confusion: an HMAC over the token keyed with the (public) root certificate."""
    root = pki.root
    kid = libtrust_key_id(root.key.public_key())
    public_pem = root.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    token = hmac_signed(claims(), public_pem, kid=kid)
    with pytest.raises(InvalidToken, match="HS256"):
        verifier(pki).verify(token)


def test_hs256_allowed_by_configuration_still_cannot_use_an_asymmetric_key(
    pki: Pki,
) -> None:
    root = pki.root
    kid = libtrust_key_id(root.key.public_key())
    token = hmac_signed(claims(), b"a guessed secret of thirty-two bytes!", kid=kid)
    with pytest.raises(InvalidToken):
        verifier(pki, algorithms=("HS256", "ES256")).verify(token)


def test_algorithm_outside_the_configured_list_is_refused(pki: Pki) -> None:
    direct = pki.direct
    token = mint(claims(), direct.key, x5c=[direct])
    with pytest.raises(InvalidToken, match="ES256"):
        verifier(pki, algorithms=("RS256",)).verify(token)


def test_tampered_payload_is_refused(pki: Pki) -> None:
    direct = pki.direct
    token = mint(claims(access=[repo_access("a", "pull")]), direct.key, x5c=[direct])
    forged = tampered(token, access=[repo_access("a", "pull", "push")])
    with pytest.raises(InvalidToken, match=r"[Ss]ignature"):
        verifier(pki).verify(forged)


def test_garbage_is_refused(pki: Pki) -> None:
    for token in ("", "abc", "a.b.c", "e30.e30."):
        with pytest.raises(InvalidToken):
            verifier(pki).verify(token)


def test_access_claim_entries_that_are_malformed_grant_nothing(pki: Pki) -> None:
    direct = pki.direct
    access: list[Any] = [
        {"type": "repository", "name": "a", "actions": "pull"},
        "repository:b:pull",
    ]
    token = mint(claims(access=access), direct.key, x5c=[direct])
    assert verifier(pki).verify(token).access == []


def test_signer_key_and_certificate_are_created_once(tmp_path: Path) -> None:
    key_path, cert_path = tmp_path / "keys" / "token.key", tmp_path / "keys" / "token.crt"
    signer = load_or_create_signer(str(key_path), str(cert_path), "svc")
    assert key_path.stat().st_mode & 0o777 == 0o600
    assert cert_path.exists()
    again = load_or_create_signer(str(key_path), str(cert_path), "svc")
    assert again.kid == signer.kid
    token = signer.issue("moorage", "svc", "bob", [repository("a", "pull")], 60)
    verified = Verifier("moorage", "svc", [again.certificate]).verify(token)
    assert verified.subject == "bob" and verified.access == [repository("a", "pull")]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["kid"] == signer.kid and len(header["x5c"]) == 1


def test_x5c_chain_through_a_certificate_that_is_no_ca_is_refused(pki: Pki) -> None:
    """A leaf certificate may sign tokens, not certificates: a chain whose intermediate is not a
    CA (as Go's x509 verification, and so distribution, refuses it) grants nothing."""
    impostor = certificate("impostor", issuer=pki.direct, ca=False)
    token = mint(claims(), impostor.key, x5c=[impostor, pki.direct])
    with pytest.raises(InvalidToken, match="x5c"):
        verifier(pki).verify(token)
