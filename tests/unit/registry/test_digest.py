from __future__ import annotations

import hashlib
import re

import pytest

from moorage.registry.digest import ALGORITHMS, Digest, new_hasher
from moorage.registry.errors import DigestInvalid

SHA256 = hashlib.sha256(b"hello").hexdigest()
SHA512 = hashlib.sha512(b"hello").hexdigest()


def test_parse_sha256() -> None:
    digest = Digest.parse(f"sha256:{SHA256}")
    assert digest == Digest("sha256", SHA256)
    assert digest.algorithm == "sha256"
    assert digest.hex == SHA256
    assert str(digest) == f"sha256:{SHA256}"


def test_parse_sha512() -> None:
    digest = Digest.parse(f"sha512:{SHA512}")
    assert digest == Digest("sha512", SHA512)
    assert str(digest) == f"sha512:{SHA512}"


def test_of_matches_hashlib() -> None:
    assert Digest.of(b"hello") == Digest("sha256", SHA256)
    assert Digest.of(b"hello", "sha512") == Digest("sha512", SHA512)
    assert Digest.of(b"") == Digest.parse(
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_digests_are_values() -> None:
    first, second = Digest.of(b"a"), Digest.of(b"a")
    assert first == second
    assert hash(first) == hash(second)
    assert len({first, second, Digest.of(b"b")}) == 2
    assert sorted([Digest("sha512", "1"), Digest("sha256", "2")])[0].algorithm == "sha256"


@pytest.mark.parametrize(
    "text",
    [
        "",
        SHA256,
        f":{SHA256}",
        "sha256:",
        f"sha256:{SHA256.upper()}",
        f"sha256:{SHA256[:-1]}",
        f"sha256:{SHA256}0",
        f"sha256:{SHA256[:-1]}g",
        f"SHA256:{SHA256}",
        f"sha256 :{SHA256}",
        f"sha256:{SHA256}\n",
        f" sha256:{SHA256}",
        f"sha256:{SHA512}",
        f"sha512:{SHA256}",
    ],
)
def test_malformed_digests_refused(text: str) -> None:
    with pytest.raises(DigestInvalid) as caught:
        Digest.parse(text)
    assert caught.value.message.startswith("invalid digest")
    assert caught.value.detail == {"digest": text}
    assert Digest.parse_or_none(text) is None


@pytest.mark.parametrize("algorithm", ["md5", "sha384", "sha256+b64u", "blake3"])
def test_unsupported_algorithms_refused(algorithm: str) -> None:
    text = f"{algorithm}:{SHA256}"
    expected = re.escape(f"unsupported digest algorithm {algorithm!r}")
    with pytest.raises(DigestInvalid, match=expected):
        Digest.parse(text)
    assert Digest.parse_or_none(text) is None


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("sha256:", "expected algorithm:hex"),
        (f"sha256:{SHA256[:-1]}", "sha256 takes 64 lowercase hex characters"),
        (f"sha512:{SHA256}", "sha512 takes 128 lowercase hex characters"),
        (f"sha256:{SHA256.upper()}", "sha256 takes 64 lowercase hex characters"),
        (f"md5:{SHA256}", "unsupported digest algorithm 'md5'; use one of sha256, sha512"),
    ],
)
def test_refusals_say_what_is_wrong(text: str, says: str) -> None:
    with pytest.raises(DigestInvalid) as caught:
        Digest.parse(text)
    assert says in caught.value.message


def test_parse_or_none_on_valid() -> None:
    assert Digest.parse_or_none(f"sha256:{SHA256}") == Digest("sha256", SHA256)


@pytest.mark.parametrize("algorithm", sorted(ALGORITHMS))
def test_new_hasher(algorithm: str) -> None:
    hasher = new_hasher(algorithm)
    hasher.update(b"hel")
    saved = hasher.copy()
    hasher.update(b"lo")
    assert hasher.hexdigest() == Digest.of(b"hello", algorithm).hex
    assert len(hasher.hexdigest()) == ALGORITHMS[algorithm]
    assert saved.hexdigest() == Digest.of(b"hel", algorithm).hex


def test_new_hasher_unsupported() -> None:
    with pytest.raises(DigestInvalid, match="unsupported digest algorithm 'md5'"):
        new_hasher("md5")
