"""Properties of digests: every supported algorithm's digests round-trip through parsing
(`str(Digest.parse(x)) == x`), digests computed here parse back, and any other text is refused
with DigestInvalid and nothing else."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from moorage.registry.digest import ALGORITHMS, Digest, new_hasher
from moorage.registry.errors import DigestInvalid
from tests.strategies import DIGEST_LENGTHS, hostile_digests, is_valid_digest, valid_digests


def test_the_supported_algorithms_are_those_of_the_spec() -> None:
    assert ALGORITHMS == DIGEST_LENGTHS


@pytest.mark.parametrize("algorithm", sorted(DIGEST_LENGTHS))
@given(st.data())
def test_valid_digests_of_each_algorithm_round_trip(algorithm: str, data: st.DataObject) -> None:
    text = data.draw(valid_digests(algorithm), label="digest")
    digest = Digest.parse(text)
    assert str(digest) == text
    assert (digest.algorithm, digest.hex) == tuple(text.split(":"))
    assert Digest.parse_or_none(text) == digest


@pytest.mark.parametrize("algorithm", sorted(DIGEST_LENGTHS))
@given(st.binary(max_size=200))
def test_computed_digests_parse_back(algorithm: str, data: bytes) -> None:
    digest = Digest.of(data, algorithm)
    assert Digest.parse(str(digest)) == digest
    assert digest.hex == hashlib.new(algorithm, data).hexdigest()
    hasher = new_hasher(algorithm)
    hasher.update(data)
    assert hasher.hexdigest() == digest.hex


@given(hostile_digests)
def test_a_digest_is_accepted_exactly_when_it_is_valid(text: str) -> None:
    try:
        digest = Digest.parse(text)
    except DigestInvalid:
        assert not is_valid_digest(text)
        assert Digest.parse_or_none(text) is None
    else:
        assert is_valid_digest(text)
        assert str(digest) == text


@given(st.text(max_size=20))
def test_a_hasher_is_made_for_supported_algorithms_only(algorithm: str) -> None:
    try:
        new_hasher(algorithm)
    except DigestInvalid:
        assert algorithm not in DIGEST_LENGTHS
    else:
        assert algorithm in DIGEST_LENGTHS
