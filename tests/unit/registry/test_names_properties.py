"""Properties of names, tags and references against hostile text: a name or tag is accepted
exactly when the distribution spec's grammar accepts it (the strategies write the grammar out
independently), and everything else is refused with the domain error that says what broke; a
manifest reference is a tag or a digest, and any other text is refused with a RegistryError."""

from __future__ import annotations

import asyncio
import re

from hypothesis import given
from hypothesis import strategies as st

from moorage.registry.errors import (
    DigestInvalid,
    ManifestUnknown,
    NameInvalid,
    RegistryError,
    TagInvalid,
)
from moorage.registry.names import check_name, check_tag, is_tag
from moorage.registry.repository import Registry
from moorage.storage.driver import create
from tests.strategies import (
    MAX_NAME_LENGTH,
    NAME_GRAMMAR,
    TAG_GRAMMAR,
    encode,
    hostile_names,
    hostile_references,
    hostile_tags,
    is_valid_digest,
    manifests,
    valid_digests,
    valid_names,
    valid_tags,
)


def in_name_grammar(text: str) -> bool:
    return len(text) <= MAX_NAME_LENGTH and re.fullmatch(NAME_GRAMMAR, text) is not None


def in_tag_grammar(text: str) -> bool:
    return re.fullmatch(TAG_GRAMMAR, text) is not None


@given(valid_names)
def test_names_of_the_grammar_are_accepted(name: str) -> None:
    assert check_name(name) == name


@given(hostile_names)
def test_a_name_is_accepted_exactly_when_the_grammar_accepts_it(name: str) -> None:
    try:
        assert check_name(name) == name
    except NameInvalid:
        assert not in_name_grammar(name)
    else:
        assert in_name_grammar(name)


@given(hostile_names.filter(lambda name: not in_name_grammar(name)))
def test_an_invalid_name_is_told_which_rule_it_breaks(name: str) -> None:
    """Not just "invalid repository name": the message names the rule (length, a component's
    characters, a separator, an empty component) so the client can fix the name."""
    try:
        check_name(name)
    except NameInvalid as exc:
        assert exc.message != NameInvalid.message, f"{name!r}: {exc.message}"
    else:
        raise AssertionError(f"{name!r} accepted")


@given(valid_tags)
def test_tags_of_the_grammar_are_accepted(tag: str) -> None:
    assert check_tag(tag) == tag
    assert is_tag(tag)


@given(hostile_tags)
def test_a_tag_is_accepted_exactly_when_the_grammar_accepts_it(tag: str) -> None:
    assert is_tag(tag) == in_tag_grammar(tag)
    try:
        assert check_tag(tag) == tag
    except TagInvalid:
        assert not in_tag_grammar(tag)
    else:
        assert in_tag_grammar(tag)


@given(
    st.one_of(valid_tags, valid_digests(), hostile_references),
    st.sampled_from(["get", "put", "delete"]),
    manifests(),
)
def test_a_reference_is_a_tag_or_a_digest_and_anything_else_is_refused(
    reference: str, operation: str, generated: tuple[dict[str, object], str]
) -> None:
    """On an empty repository: a tag or a digest is unknown to get and delete, and a push under
    a tag fails only for the manifest's missing blobs; any other reference is refused with a
    RegistryError, and one that is neither a tag nor shaped like a digest (no `algorithm:`) is
    not called an invalid digest."""
    repo = Registry(create("inmemory", {}), deletes=True).repository("props/refs")
    document, media_type = generated

    async def run() -> None:
        if operation == "get":
            await repo.manifests.get(reference)
        elif operation == "delete":
            await repo.manifests.delete(reference)
        else:
            await repo.manifests.put(reference, encode(document), media_type, [])

    outcome: RegistryError | None = None
    try:
        asyncio.run(run())
    except RegistryError as exc:
        outcome = exc
    if in_tag_grammar(reference):
        if operation == "put":
            assert not isinstance(outcome, TagInvalid | DigestInvalid), outcome
        else:
            assert isinstance(outcome, ManifestUnknown), outcome
    elif is_valid_digest(reference):
        assert isinstance(outcome, ManifestUnknown if operation != "put" else DigestInvalid)
    else:
        assert outcome is not None, f"{operation} accepted {reference!r}"
        if ":" not in reference:
            assert not isinstance(outcome, DigestInvalid), f"{reference!r}: {outcome.message}"
